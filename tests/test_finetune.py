"""Finetuning: loading a pretraining checkpoint, freezing, layer-wise decay, heads, evaluation."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import toy_generators
from configs.finetune import get_config as finetune_config
from configs.pretrain import get_config as pretrain_config
from msm_jax.checkpoint.manager import CheckpointNotFoundError, restore_encoder, restore_params
from msm_jax.finetune.init import adapt_patch_embed
from msm_jax.finetune.task import FinetuneTask, finetune
from msm_jax.models.build import build_encoder
from msm_jax.training.optimizer import FROZEN, finetune_labels, make_optimizer
from msm_jax.training.pretrain import pretrain

STATS = {"mean": 0.0, "std": 1.0}


@pytest.fixture(autouse=True)
def toys(monkeypatch):
  toy_generators.register(monkeypatch)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A tiny MSM run of 4 steps: enough to have weights unlike a fresh initialisation."""
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  config = pretrain_config("tiny")
  config.update(input_shape=(32, 32, 1), batch_size=8, total_steps=4, warmup_steps=1,
                log_every=2, checkpoint_every=4, figure_every=0)
  pretrain(config, workdir)
  return workdir


def small(variant, **overrides):
  config = finetune_config(variant)
  config.data.generator = "toy_class" if variant.startswith("har") else "toy_pixel"
  config.update(batch_size=8, total_steps=6, warmup_steps=1, log_every=3, checkpoint_every=6,
                figure_every=0, eval_batch_size=16)
  config.data.eval_examples = 24
  config.data.val_examples = 16
  config.data.num_examples = 0  # fresh toy examples; tests/test_data.py covers the pools
  config.update(overrides)
  return config


def flat(tree):
  return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def test_checkpoint_loads_encoder_and_decoder_blocks_identically(pretrained):
  config = small("seg_tiny", init_from=pretrained, input_shape=(32, 64, 1))  # another grid
  task = FinetuneTask(config, toy_generators.PIXEL.classes, STATS)
  fresh = jax.device_get(task.init_params(jax.random.key(1)))
  params = flat(task.pretrained_params(fresh))
  encoder, description = restore_encoder(pretrained)
  for path, value in flat(encoder).items():
    np.testing.assert_array_equal(params[f"encoder/{path}"], value)
  msm = flat(restore_params(pretrained)[0])
  decoder = [p for p in params if p.startswith("decoder/")]
  assert decoder and all(p.startswith(("decoder/embed/", "decoder/transformer/")) for p in decoder)
  for path in decoder:
    np.testing.assert_array_equal(params[path], msm[path])
  np.testing.assert_array_equal(params["head/kernel"], flat(fresh)["head/kernel"])  # new layer
  assert description["encoder"]["width"] == config.model.encoder.width


def test_channel_adaptation_embeds_equal_channels_like_the_pretrained_one():
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(4 * 4 * 1, 8)).astype(np.float32)
  adapted = adapt_patch_embed(kernel, (4, 4), 3)
  assert adapted.shape == (48, 8)
  patch = rng.normal(size=(4, 4, 1)).astype(np.float32)
  np.testing.assert_allclose(np.repeat(patch, 3, axis=2).reshape(-1) @ adapted,
                             patch.reshape(-1) @ kernel, rtol=1e-5, atol=1e-6)
  two = rng.normal(size=(4 * 4 * 2, 8)).astype(np.float32)  # 2 -> 3: the channel mean, shared
  np.testing.assert_allclose(np.repeat(patch, 3, axis=2).reshape(-1) @ adapt_patch_embed(
      two, (4, 4), 3), patch.reshape(-1) @ two.reshape(4, 4, 2, 8).mean(2).reshape(16, 8),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(adapt_patch_embed(two, (4, 4), 2), two)


def test_heads_output_shapes():
  for variant, want in [("seg_tiny", (2, 32, 64, 3)), ("har_tiny", (2, 3))]:
    config = small(variant, input_shape=(32, 64, 3))
    task = FinetuneTask(config, ("a", "b", "c"), STATS)
    params = task.init_params(jax.random.key(0))
    assert task.predict(params, np.zeros((2, 32, 64, 3), np.float32)).shape == want


def test_unadaptable_checkpoints_and_bad_configs_fail_clearly(pretrained, tmp_path):
  config = small("har_tiny", init_from=pretrained)
  config.model.patch_size = (4, 4)
  with pytest.raises(ValueError, match=r"config\.model\.patch_size=\(4, 4\).*\(8, 8\)"):
    FinetuneTask(config, ("a", "b"), STATS)
  config = small("har_tiny", init_from=pretrained)
  config.model.encoder.width = 32
  with pytest.raises(ValueError, match=r"config\.model\.encoder\.width=32.*64"):
    FinetuneTask(config, ("a", "b"), STATS)
  with pytest.raises(CheckpointNotFoundError, match="no checkpoint"):
    FinetuneTask(small("har_tiny", init_from=str(tmp_path)), ("a", "b"), STATS)
  with pytest.raises(ValueError, match="labelled dataset"):
    FinetuneTask(small("har_tiny"), (), STATS)
  with pytest.raises(ValueError, match=r"config\.mode='probe'"):
    FinetuneTask(small("har_tiny", mode="probe"), ("a", "b"), STATS)
  with pytest.raises(ValueError, match=r"config\.trainable_blocks=3"):
    FinetuneTask(small("har_tiny", mode="partial", trainable_blocks=3), ("a", "b"), STATS)
  with pytest.raises(ValueError, match=r"config\.class_weights"):
    FinetuneTask(small("seg_tiny", class_weights=(1.0, 2.0)), ("a", "b", "c"), STATS)
  with pytest.raises(ValueError, match=r"finetune variant 'tiny'"):
    finetune_config("tiny")


def test_labels_and_layer_decay():
  encoder = build_encoder(pretrain_config("tiny").model)  # 2 blocks
  params = jax.eval_shape(lambda: {"encoder": encoder.init(jax.random.key(0), jnp.zeros(
      (1, 16, 16, 1)))["params"], "head": {"kernel": jnp.zeros((64, 3))}})
  groups = lambda mode, k=0: flat(finetune_labels(params, mode=mode, depth=2, trainable_blocks=k))
  linear, partial, full = groups("linear"), groups("partial", 1), groups("full")
  assert {p for p, l in linear.items() if l != FROZEN} == {"head/kernel"}
  assert partial["encoder/transformer/block1/mlp/fc1/kernel"] == "layer2"
  assert partial["encoder/transformer/block0/mlp/fc1/kernel"] == FROZEN
  assert partial["encoder/transformer/norm/scale"] == "layer3"
  assert full["encoder/patch_embed/kernel"] == full["encoder/cls"] == "layer0"
  assert full["encoder/transformer/block0/attn/qkv/kernel"] == "layer1"

  # First Adam step: |update| = lr x scale for every parameter with a nonzero gradient.
  config = small("har_tiny", weight_decay=0.0, layer_decay=0.5, mode="full")
  values = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
  tx = make_optimizer(config, lambda step: 0.1, finetune_labels(values, mode="full", depth=2))
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, values), tx.init(values), values)
  updates = flat(updates)
  for path, scale in [("head/kernel", 1.0), ("encoder/transformer/block1/mlp/fc1/kernel", 0.5),
                      ("encoder/transformer/block0/mlp/fc1/kernel", 0.25),
                      ("encoder/patch_embed/kernel", 0.125)]:
    np.testing.assert_allclose(np.abs(updates[path]), 0.1 * scale, rtol=1e-4)
  tx = make_optimizer(config, lambda step: 0.1, finetune_labels(values, mode="linear", depth=2))
  state = tx.init(values)
  assert sum(x.size for x in jax.tree.leaves(state)) < 3 * 64 * 3 + 10  # Adam state: head only
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, values), state, values)
  assert not np.any(flat(updates)["encoder/patch_embed/kernel"])


def test_frozen_encoder_gets_no_gradient(pretrained):
  task = FinetuneTask(small("seg_tiny", init_from=pretrained), toy_generators.PIXEL.classes, STATS)
  params = task.init_params(jax.random.key(0))
  batch = {"image": jnp.ones((2, 64, 64, 1)), "label": jnp.ones((2, 64, 64), jnp.int32)}
  grads, _ = jax.grad(task.loss_fn, has_aux=True)(params, batch, jax.random.key(0), jnp.arange(2))
  grads = flat(grads)
  assert all(not np.any(g) for p, g in grads.items() if p.startswith("encoder/"))
  assert np.any(grads["head/kernel"]) and np.any(grads["decoder/transformer/block0/mlp/fc1/kernel"])


def test_probe_modes_name_what_trains(pretrained):
  """'paper_probe': activity re-initialises and trains the patch embedding under the frozen
  blocks; segmentation trains the pretrained decoder blocks. 'linear': a linear head alone."""
  har = FinetuneTask(small("har_tiny", init_from=pretrained, mode="paper_probe"), ("a", "b"), STATS)
  fresh = jax.device_get(har.init_params(jax.random.key(1)))
  loaded, stored = flat(har.pretrained_params(fresh)), flat(restore_params(pretrained)[0])
  np.testing.assert_array_equal(loaded["encoder/patch_embed/kernel"],
                                flat(fresh)["encoder/patch_embed/kernel"])  # not the checkpoint's
  np.testing.assert_array_equal(loaded["encoder/transformer/block0/mlp/fc1/kernel"],
                                stored["encoder/transformer/block0/mlp/fc1/kernel"])
  labels = flat(har.labels)
  assert {p for p, l in labels.items() if l != FROZEN} == {
      "encoder/patch_embed/kernel", "encoder/patch_embed/bias", "head/kernel", "head/bias",
      "head_norm/scale", "head_norm/bias"}
  assert labels["encoder/patch_embed/kernel"] == labels["head/kernel"]  # new: the head's rate

  seg = FinetuneTask(small("seg_tiny", init_from=pretrained, mode="linear"), ("a", "b"), STATS)
  params = flat(seg.init_params(jax.random.key(0)))
  assert not any(p.startswith("decoder/") for p in params)
  assert {p for p, l in flat(seg.labels).items() if l != FROZEN} == {"head/kernel", "head/bias"}
  assert seg.export(seg.init_params(jax.random.key(0)))[1]["decoder_blocks"] == 0
  assert seg.predict(seg.init_params(jax.random.key(0)),
                     np.zeros((2, 64, 64, 1), np.float32)).shape == (2, 64, 64, 2)
  probe = FinetuneTask(small("seg_tiny", init_from=pretrained), ("a", "b"), STATS)
  assert probe.config.mode == "paper_probe"  # the default: decoder blocks train, encoder frozen
  trainable = {p for p, l in flat(probe.labels).items() if l != FROZEN}
  assert "decoder/transformer/block0/mlp/fc1/kernel" in trainable
  assert not any(p.startswith("encoder/") for p in trainable)


@pytest.mark.parametrize("mode", ["linear", "paper_probe", "partial"])
def test_finetuning_keeps_frozen_weights_bit_identical(pretrained, tmp_path, mode):
  config = small("har_tiny", init_from=pretrained, mode=mode, trainable_blocks=1, base_lr=1.0)
  state, metrics = finetune(config, str(tmp_path))
  trained, start = flat(state.params), flat(restore_params(pretrained)[0])
  for path, value in trained.items():
    frozen = path.startswith("encoder/") and not (
        mode == "partial" and path.startswith(("encoder/transformer/block1/",
                                               "encoder/transformer/norm/")))
    if path.startswith("encoder/patch_embed/") and mode == "paper_probe":  # new, then trained
      stored = start[path]
      if path.endswith("kernel"):
        stored = adapt_patch_embed(stored, (8, 8), 3)
      assert not np.allclose(value, stored), path
    elif path == "encoder/patch_embed/kernel":  # adapted 1 -> 3 channels, then frozen
      np.testing.assert_array_equal(value, adapt_patch_embed(start[path], (8, 8), 3))
    elif frozen:
      np.testing.assert_array_equal(value, start[path], err_msg=path)
    elif path.startswith("encoder/"):
      assert not np.array_equal(value, start[path]), f"{path} did not train"
  assert np.abs(trained["head/kernel"]).max() > 1e-3  # moved far from its 2e-5 initialisation
  saved = json.load(open(tmp_path / "eval.json"))
  assert saved["num_examples"] == 24 and saved["split"] == "test"
  assert saved["trainable_params"] == metrics["trainable_params"] < metrics["total_params"]
  assert os.path.exists(tmp_path / "figures" / "confusion_test.png")


def test_segmentation_learns_the_toy_task_and_resumes(tmp_path):
  config = small("seg_tiny", mode="full", total_steps=40, base_lr=0.1, checkpoint_every=20)
  config.data.eval_split = "train"
  _, metrics = finetune(config, str(tmp_path))
  assert metrics["pixel_accuracy"] > 0.9 and metrics["mean_iou"] > 0.6, metrics
  assert os.path.exists(tmp_path / "figures" / "segmentation_train.png")
  again = finetune(config, str(tmp_path))[1]  # finished run: resumes at the end, re-evaluates
  assert again["confusion_matrix"] == metrics["confusion_matrix"]
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  steps = [r["step"] for r in rows]
  assert steps == sorted(set(steps)) and steps[-1] == 40
  validated = {r["step"]: r["val_mean_iou"] for r in rows if "val_mean_iou" in r}
  assert list(validated) == [20, 40]  # with every checkpoint
  best = json.load(open(tmp_path / "best" / "best.json"))
  assert best == {"step": best["step"], "metric": "mean_iou", "value": max(validated.values())}
  best_params, _ = restore_params(str(tmp_path / "best"))
  task = FinetuneTask(config, toy_generators.PIXEL.classes, STATS)
  assert task.validate(best_params)["mean_iou"] == pytest.approx(best["value"], rel=1e-6)
  from msm_jax.finetune.predict import load_finetuned
  model = load_finetuned(str(tmp_path / "best"))  # what launch.predict --workdir=.../best does
  assert model.classes == toy_generators.PIXEL.classes
  jax.tree.map(np.testing.assert_array_equal, model.params, best_params)


def test_finetune_command_with_the_csi_generator(pretrained, tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tmp_path / "har"
  result = subprocess.run(
      [sys.executable, "-m", "launch.finetune", "--config=configs/finetune.py:har_tiny",
       f"--workdir={workdir}", f"--config.init_from={pretrained}", "--config.total_steps=4",
       "--config.batch_size=8", "--config.log_every=2", "--config.data.eval_examples=16",
       "--config.mode=partial", "--config.trainable_blocks=1",
       # a small pool: the default 1,024 CSI examples would take most of a minute to generate
       "--config.data.num_examples=32", "--config.data.val_examples=16"],
      cwd=root, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "step 4/4" in result.stdout and "samples/s" in result.stdout
  assert "Evaluation (" in result.stdout and '"accuracy"' in result.stdout
  saved = json.load(open(workdir / "eval.json"))
  assert saved["class_names"] == ["box", "circle", "clean", "fall", "run", "walk"]
  assert saved["num_examples"] == 16
  config = json.load(open(workdir / "config.json"))
  assert config["mode"] == "partial" and config["init_from"] == pretrained


def test_jit_and_pmap_finetuning_agree(tmp_path):
  params = {}
  for parallel in ("jit", "pmap"):
    config = small("seg_tiny", parallel=parallel, mode="full", total_steps=2, log_every=1,
                   checkpoint_every=2, base_lr=0.1)
    config.model.drop_path = 0.0  # drop-path draws differ between the layouts by design
    config.data.eval_examples = 8
    params[parallel] = flat(finetune(config, str(tmp_path / parallel))[0].params)
  assert params["jit"].keys() == params["pmap"].keys()
  for path, value in params["jit"].items():
    np.testing.assert_allclose(params["pmap"][path], value, rtol=2e-4, atol=2e-6, err_msg=path)


def test_mixup_and_label_smoothing_change_the_targets():
  batch = {"image": jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 64, 3)), jnp.float32),
           "label": jnp.asarray([0, 1, 2, 0], jnp.int32)}
  losses = {}
  for name, overrides in [("plain", {}), ("mixup", dict(mixup_alpha=0.4)),
                          ("smooth", dict(label_smoothing=0.2))]:
    config = small("har_tiny", **overrides)
    config.model.drop_path = 0.0
    task = FinetuneTask(config, ("a", "b", "c"), STATS)
    params = task.init_params(jax.random.key(0))
    params["head"]["kernel"] = jax.random.normal(jax.random.key(1), params["head"]["kernel"].shape)
    losses[name] = float(task.loss_fn(params, batch, jax.random.key(3), jnp.arange(4))[0])
  assert abs(losses["mixup"] - losses["plain"]) > 1e-3
  assert abs(losses["smooth"] - losses["plain"]) > 1e-3


def test_segmentation_at_the_papers_256x256():
  """The paper segments 256x256 spectrograms: the seg_vit_* variants are built for that size, and
  the tiny network's 8x8 patches run at it (1,024 tokens; the resolution study trains it)."""
  classes = ("noise", "lte", "nr")
  for size in ("vit_s", "vit_m", "vit_l"):
    task = FinetuneTask(finetune_config(f"seg_{size}"), classes, STATS)
    assert task.input_shape == (256, 256, 1)
    shapes = jax.eval_shape(task.init_params, jax.random.key(0))
    logits = jax.eval_shape(task.logits, shapes, jax.ShapeDtypeStruct((1, 256, 256, 1),
                                                                      jnp.float32))
    assert logits.shape == (1, 256, 256, 3)
  task = FinetuneTask(small("seg_tiny", input_shape=(256, 256, 1)), classes, STATS)
  probabilities = task.predict(task.init_params(jax.random.key(0)),
                               np.zeros((1, 256, 256, 1), np.float32))
  assert probabilities.shape == (1, 256, 256, 3)
  np.testing.assert_allclose(np.asarray(probabilities).sum(-1), 1.0, rtol=1e-5)
