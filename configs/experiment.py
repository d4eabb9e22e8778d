r"""The paper's study at a chosen scale: `--config=configs/experiment.py:VARIANT`.

  python -m launch.experiment --config=configs/experiment.py:cpu --workdir=/tmp/study

Variants: cpu (tiny models, under an hour on 2 CPU cores), paper (ViT-S with the paper's sizes,
for accelerators), test (seconds-long runs for the test suite). Rerunning resumes.
"""
import ml_collections
import numpy as np


def get_config(variant: str = "cpu"):
  variant = variant or "cpu"
  if variant not in ("cpu", "paper", "test"):
    raise ValueError(f"experiment variant {variant!r} must be 'cpu', 'paper' or 'test'.")
  tiny = variant != "paper"
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0
  c.size = "tiny" if tiny else "vit_s"  # the pretrained encoder (configs/pretrain.py variant)
  # The scratch baseline ~4x the encoder's parameters (tiny: 0.07M -> 0.27M; ViT-S -> ViT-L's
  # width at ViT-S depth, 38M -> 151M).
  c.large_encoder = (dict(width=128, depth=2, num_heads=4, mlp_dim=256) if tiny else
                     dict(width=1024, depth=12, num_heads=16, mlp_dim=4096))
  c.mask_ratios = (0.7, 0.75, 0.8)
  c.test_mask_ratios = tuple(float(r) for r in np.round(np.arange(0.2, 0.951, 0.05), 2))
  c.recon_examples = 16 if variant == "test" else 128

  c.data_dir = ""  # default WORKDIR/data; the datasets are built there on the first run
  c.pretrain_generator = "radio_scene"
  c.pretrain_shape = (64, 64, 1) if tiny else (224, 224, 1)
  c.shapes = ml_collections.ConfigDict(
      {"seg": (64, 64, 1) if tiny else (256, 256, 1), "har": (32, 64, 3) if tiny else (112, 496, 3)})
  c.examples = ml_collections.ConfigDict(
      {"test": dict(pretrain=32, seg=32, har=32, eval=16),
       "cpu": dict(pretrain=2048, seg=1024, har=1024, eval=256),
       "paper": dict(pretrain=100_000, seg=8_000, har=6_000, eval=1_000)}[variant])

  steps = {"test": (6, 6, 6), "cpu": (3000, 600, 600), "paper": (100_000, 10_000, 10_000)}
  pretrain_steps, probe_steps, scratch_steps = steps[variant]
  batch = 8 if variant == "test" else (64 if tiny else 256)
  every = dict(log_every=min(50, pretrain_steps), checkpoint_every=pretrain_steps)
  c.pretrain = ml_collections.ConfigDict(dict(
      total_steps=pretrain_steps, warmup_steps=pretrain_steps // 10, batch_size=batch,
      figure_every=pretrain_steps, **every))
  common = dict(batch_size=batch, figure_every=0, eval_batch_size=64,
                log_every=min(50, probe_steps), checkpoint_every=probe_steps)
  # The paper's linear probe: frozen encoder, the head alone learns (fast, so a larger lr).
  c.probe = ml_collections.ConfigDict(dict(
      mode="linear", total_steps=probe_steps, warmup_steps=probe_steps // 10,
      base_lr=0.02 if tiny else 0.01, **common))
  # From scratch: every parameter trains, no layer-wise decay (nothing is pretrained).
  c.scratch = ml_collections.ConfigDict(dict(
      mode="full", layer_decay=1.0, total_steps=scratch_steps, warmup_steps=scratch_steps // 10,
      base_lr=0.005 if tiny else 5e-4, **common))
  return c
