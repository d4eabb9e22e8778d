r"""The paper's study at a chosen scale: `--config=configs/experiment.py:VARIANT`.

  python -m launch.experiment --config=configs/experiment.py:cpu --workdir=/tmp/study

Variants:
  cpu       the `mid` encoder (128 wide, 4 blocks, 0.8M parameters) pretrained at 75 % masking
            only, 8,000 steps (~30 min on 2 idle cores; ~15,000 fill an hour): three
            pretrainings would not fit. Segmentation runs take 200 steps, activity runs 1,500
            (CSI needs them). ~2.5 h on 2 cores.
  cpu_tiny  the `tiny` encoder (0.07M) at 70 / 75 / 80 % masking with the recipes of the first
            CPU study (docs/study.md's table), plus the new parts; ~1.4 h on 2 cores.
  paper     ViT-S with the paper's sizes, for accelerators.
  test      seconds-long runs for the test suite.
Rerunning resumes.
"""
import ml_collections
import numpy as np

VARIANTS = ("cpu", "cpu_tiny", "paper", "test")
SIZE = {"cpu": "mid", "cpu_tiny": "tiny", "paper": "vit_s", "test": "tiny"}
# The scratch baseline ~4x the encoder's parameters: twice its width at the same depth
# (tiny: 0.07M -> 0.27M; mid: 0.8M -> 3.2M; ViT-S -> ViT-L's width, 38M -> 151M).
LARGE_ENCODER = {"tiny": dict(width=128, depth=2, num_heads=4, mlp_dim=256),
                 "mid": dict(width=256, depth=4, num_heads=8, mlp_dim=1024),
                 "vit_s": dict(width=1024, depth=12, num_heads=16, mlp_dim=4096)}
# Pretraining steps, and per task the finetuning (steps, batch). Every finetuning run of a task
# (probes, scratch, label-efficiency and held-out runs) takes the same steps, so the label-efficiency
# curve's point at the whole train split is the main table's run. cpu, as measured on 2 shared
# cores: 0.21-0.26 s/step of pretraining; segmentation 200 steps of 32 (6 epochs of the 1,024
# labelled frames); activities 1,500 of 32: at 200 every CSI arm stayed at chance.
SCHEDULE = {"test": (6, {"seg": (6, 8), "har": (6, 8)}),
            "cpu_tiny": (3000, {"seg": (600, 64), "har": (600, 64)}),
            "cpu": (8_000, {"seg": (200, 32), "har": (1_500, 32)}),
            "paper": (100_000, {"seg": (10_000, 256), "har": (10_000, 256)})}


def get_config(variant: str = "cpu"):
  variant = variant or "cpu"
  if variant not in VARIANTS:
    raise ValueError(f"experiment variant {variant!r} must be one of {VARIANTS}.")
  cpu = variant != "paper"
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0
  c.size = SIZE[variant]  # the pretrained encoder (configs/pretrain.py variant)
  c.large_encoder = LARGE_ENCODER[c.size]
  c.mask_ratios = {"cpu": (0.75,), "test": (0.7, 0.8)}.get(variant, (0.7, 0.75, 0.8))
  c.test_mask_ratios = tuple(float(r) for r in np.round(np.arange(0.2, 0.951, 0.05), 2))
  c.recon_examples = 16 if variant == "test" else 128

  c.data_dir = ""  # default WORKDIR/data; the datasets are built there on the first run
  c.pretrain_generator = "radio_scene"
  c.pretrain_shape = (64, 64, 1) if cpu else (224, 224, 1)
  c.shapes = ml_collections.ConfigDict(
      {"seg": (64, 64, 1) if cpu else (256, 256, 1), "har": (32, 64, 3) if cpu else (112, 496, 3)})
  c.examples = ml_collections.ConfigDict(
      {"test": dict(pretrain=32, seg=32, har=32, eval=16),
       "paper": dict(pretrain=100_000, seg=8_000, har=6_000, eval=1_000)}.get(
           variant, dict(pretrain=2048, seg=1024, har=1024, eval=256)))

  pretrain_steps, finetune_schedule = SCHEDULE[variant]
  c.pretrain = ml_collections.ConfigDict(dict(
      total_steps=pretrain_steps, warmup_steps=pretrain_steps // 10,
      batch_size={"test": 8, "paper": 256}.get(variant, 64),
      log_every=min(50, pretrain_steps), checkpoint_every=min(pretrain_steps, 2500),
      figure_every=pretrain_steps))
  # Each task's schedule (runs.finetune_config puts it over the recipe's fields below).
  c.finetune = ml_collections.ConfigDict({task: dict(
      total_steps=steps, warmup_steps=steps // 10, batch_size=batch, figure_every=0,
      eval_batch_size=64, log_every=min(50, steps), checkpoint_every=steps)
      for task, (steps, batch) in finetune_schedule.items()})
  # The probes run from every pretrained checkpoint and from a random encoder (the control):
  # 'linear' (the encoder frozen, a linear head on its tokens: what the encoder alone provides)
  # and 'paper_probe' (the paper's recipe: activity trains a new patch embedding under the
  # frozen blocks, segmentation the pretrained decoder's first blocks). Heads learn fast, so a
  # larger lr than whole networks get.
  c.probes = ("linear", "paper_probe")
  probe = dict(base_lr=0.02 if cpu else 0.01)
  c.linear = ml_collections.ConfigDict(dict(mode="linear", **probe))
  c.paper_probe = ml_collections.ConfigDict(dict(mode="paper_probe", **probe))
  # From scratch: every parameter trains, no layer-wise decay (nothing is pretrained).
  c.scratch = ml_collections.ConfigDict(dict(mode="full", layer_decay=1.0,
                                             base_lr=0.005 if cpu else 5e-4))

  # Metric vs number of labelled training examples (the first N of the train split; N at or
  # above its size is the whole split: with seed c.seed, the main table's run) for the paper
  # probe of the encoder pretrained at `mask_ratio`, that of a random encoder and scratch.
  # The tests draw it for one task: the code is the same for both, and each run costs seconds.
  c.label_efficiency = ml_collections.ConfigDict(dict(
      tasks=("har",) if variant == "test" else ("har", "seg"),
      mask_ratio=0.7 if variant == "test" else 0.75,
      label_counts=(8, 32) if variant == "test" else (16, 64, 256, 1024),
      seeds=(0, 1) if variant == "test" else (0, 1, 2)))
  # Segmentation on carrier configurations never seen in training: a radio_segmentation dataset
  # of `generator` (its test split holds only the held-out configurations), built beside the
  # others with the segmentation sizes of `examples`.
  c.held_out = ml_collections.ConfigDict(dict(generator="lte_nr_holdout"))
  return c
