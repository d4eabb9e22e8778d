"""launch.import_checkpoint: PyTorch MAE and Hugging Face ViTMAE weights compute the same in
msm-jax.

The PyTorch models are built here (randomly initialised transformers.ViTMAEForPreTraining, every
tensor drawn so that none can be mapped wrongly unnoticed), nothing is downloaded.
"""
import argparse
import json
import os
import pickle
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from configs.finetune import get_config as finetune_config
from configs.pretrain import get_config as pretrain_config
from msm_jax.checkpoint.importer import import_checkpoint
from msm_jax.checkpoint.mae_convert import swap_halves
from msm_jax.checkpoint.manager import restore_encoder, restore_params
from msm_jax.checkpoint.torch_files import CheckpointImportError
from msm_jax.data.normalize import PAPER_STATS, normalize
from msm_jax.data.source import make_source
from msm_jax.finetune.task import FinetuneTask
from msm_jax.models.build import build_encoder, build_msm
from msm_jax.training.losses import masked_mse, patch_targets
from msm_jax.training.pretrain import pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# msm-jax's tiny preset network (configs/pretrain.py:tiny) on 32x32 inputs: 16 patches of 8x8.
TINY = dict(image_size=32, patch_size=8, num_channels=1, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=128, decoder_hidden_size=32,
            decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
            decoder_intermediate_size=64)
# The paper's ViT-S widths, patch and input (vit_s), with one block each for speed.
VIT_S = dict(image_size=224, patch_size=16, num_channels=1, hidden_size=512, num_hidden_layers=1,
             num_attention_heads=8, intermediate_size=2048, decoder_hidden_size=256,
             decoder_num_hidden_layers=1, decoder_num_attention_heads=16,
             decoder_intermediate_size=1024)
TOLERANCE = 1e-4  # relative, float32


def mae_position_embedding(grid: int, width: int) -> np.ndarray:
  """facebookresearch/mae's get_2d_sincos_pos_embed(width, grid, cls_token=True), (1, 1+N, D)."""
  rows = np.arange(grid, dtype=np.float64)
  grid_xy = np.stack(np.meshgrid(rows, rows)).reshape(2, -1)  # meshgrid(w, h): column first

  def one_axis(dim, pos):
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2.0))
    out = np.einsum("m,d->md", pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  emb = np.concatenate([one_axis(width // 2, grid_xy[0]), one_axis(width // 2, grid_xy[1])], 1)
  return np.concatenate([np.zeros((1, width)), emb])[None].astype(np.float32)


def hf_model(shapes: dict, seed: int = 0, **settings) -> ViTMAEForPreTraining:
  """A ViTMAEForPreTraining with every tensor random (LayerNorm scales around 1) and MAE's fixed
  position embeddings; MAE's LayerNorm epsilon and exact GELU, as msm-jax."""
  torch.manual_seed(seed)
  model = ViTMAEForPreTraining(ViTMAEConfig(**shapes, layer_norm_eps=1e-6, hidden_act="gelu",
                                            **settings)).eval()
  grid = shapes["image_size"] // shapes["patch_size"]
  with torch.no_grad():
    for name, tensor in model.named_parameters():
      is_scale = "norm" in name and name.endswith("weight")
      tensor.copy_((1.0 if is_scale else 0.0) + 0.1 * torch.randn_like(tensor))
    model.vit.embeddings.position_embeddings.copy_(
        torch.from_numpy(mae_position_embedding(grid, shapes["hidden_size"])))
    model.decoder.decoder_pos_embed.copy_(
        torch.from_numpy(mae_position_embedding(grid, shapes["decoder_hidden_size"])))
  return model


def mae_state_dict(model: ViTMAEForPreTraining) -> dict:
  """The model's weights under facebookresearch/mae's names (its MaskedAutoencoderViT)."""
  hf = {k: v.clone() for k, v in model.state_dict().items()}
  sd = {"cls_token": hf.pop("vit.embeddings.cls_token"),
        "pos_embed": hf.pop("vit.embeddings.position_embeddings"),
        "mask_token": hf.pop("decoder.mask_token"),
        "decoder_pos_embed": hf.pop("decoder.decoder_pos_embed")}
  modules = {"vit.embeddings.patch_embeddings.projection": "patch_embed.proj",
             "vit.layernorm": "norm", "decoder.decoder_embed": "decoder_embed",
             "decoder.decoder_norm": "decoder_norm", "decoder.decoder_pred": "decoder_pred"}
  blocks = {"vit.layers": "blocks", "decoder.decoder_layers": "decoder_blocks"}
  inside = {"layernorm_before": "norm1", "attention.o_proj": "attn.proj",
            "layernorm_after": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
  for kind in ("weight", "bias"):
    for hf_name, name in modules.items():
      sd[f"{name}.{kind}"] = hf.pop(f"{hf_name}.{kind}")
    for hf_block, block in blocks.items():
      for i in range(len(model.get_submodule(hf_block))):
        p = f"{hf_block}.{i}."
        sd[f"{block}.{i}.attn.qkv.{kind}"] = torch.cat(
            [hf.pop(f"{p}attention.{x}_proj.{kind}") for x in "qkv"])
        for hf_name, name in inside.items():
          sd[f"{block}.{i}.{name}.{kind}"] = hf.pop(f"{p}{hf_name}.{kind}")
  assert not hf, sorted(hf)
  return sd


def save_mae_checkpoint(model, path, **extra):
  """As facebookresearch/mae's training saves: weights under 'model', args as a Namespace."""
  torch.save({"model": mae_state_dict(model), "epoch": 399,
              "args": argparse.Namespace(model="mae_vit_small_patch16", mask_ratio=0.75),
              **extra}, path)


def pytorch_outputs(model, images, noise):
  """(reconstruction, loss, mask, encoder features of all patches) of the PyTorch model."""
  pixels = torch.from_numpy(images.transpose(0, 3, 1, 2))
  num_patches = noise.shape[1]
  with torch.no_grad():
    out = model(pixels, noise=torch.from_numpy(noise))
    ratio, model.config.mask_ratio = model.config.mask_ratio, 0.0
    try:  # no masking, patches in order: the features of every patch
      order = torch.arange(num_patches, dtype=torch.float32).repeat(len(images), 1)
      features = model.vit(pixels, noise=order).last_hidden_state
    finally:
      model.config.mask_ratio = ratio
  return out.logits.numpy(), float(out.loss), out.mask.numpy(), features.numpy()


def msm_outputs(workdir, images, noise, norm_pix_loss):
  """The same from the imported workdir; HF's noise as our shuffle (visible, restore)."""
  params, description = restore_params(workdir)
  model = build_msm(description, channels=images.shape[-1])
  shuffle = np.argsort(noise, axis=1)
  restore = np.argsort(shuffle, axis=1)
  keep = int(noise.shape[1] * (1 - 0.75))
  pred = jax.jit(model.apply)({"params": params}, images, shuffle[:, :keep], restore)
  mask = (restore >= keep).astype(np.float32)
  target = patch_targets(images, tuple(description["patch_size"]), norm_pix_loss)
  loss = float(masked_mse(pred, target, mask))
  encoder = build_encoder(description)
  features = jax.jit(encoder.apply)({"params": params["encoder"]}, images)
  # Our residual stream is MAE's with its halves swapped (mae_convert.py); swapped back here.
  features = np.asarray(features)[..., swap_halves(features.shape[-1])]
  return np.asarray(pred), loss, mask, features


def relative_error(ours, theirs):
  return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())


def assert_same_as_pytorch(model, workdir, shapes, norm_pix_loss=False, seed=0):
  rng = np.random.default_rng(seed)
  side, patch = shapes["image_size"], shapes["patch_size"]
  images = rng.normal(size=(2, side, side, shapes["num_channels"])).astype(np.float32)
  noise = rng.uniform(size=(2, (side // patch) ** 2)).astype(np.float32)
  ours = msm_outputs(workdir, images, noise, norm_pix_loss)
  theirs = pytorch_outputs(model, images, noise)
  np.testing.assert_array_equal(ours[2], theirs[2])  # the same patches masked
  errors = {"reconstruction": relative_error(ours[0], theirs[0]),
            "loss": abs(ours[1] - theirs[1]) / abs(theirs[1]),
            "features": relative_error(ours[3], theirs[3])}
  print(f"relative errors against PyTorch: {errors}")
  assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("shapes, norm_pix_loss", [(TINY, True), (VIT_S, False)],
                         ids=["tiny-norm_pix", "vit_s_widths"])
def test_hugging_face_model_computes_the_same(tmp_path, shapes, norm_pix_loss):
  model = hf_model(shapes, norm_pix_loss=norm_pix_loss)
  model.save_pretrained(tmp_path / "hf")
  imported = import_checkpoint(str(tmp_path / "hf"), str(tmp_path / "msm"))
  assert imported.layout.format == "hf"
  assert imported.config.norm_pix_loss == norm_pix_loss
  assert_same_as_pytorch(model, str(tmp_path / "msm"), shapes, norm_pix_loss)
  _, description = restore_encoder(str(tmp_path / "msm"))
  assert description["encoder"] == {
      "width": shapes["hidden_size"], "depth": shapes["num_hidden_layers"],
      "num_heads": shapes["num_attention_heads"], "mlp_dim": shapes["intermediate_size"]}
  assert description["input_shape"] == [shapes["image_size"]] * 2 + [1]


def test_hub_layout_in_pytorch_model_bin(tmp_path):
  """transformers 4.x names (the Hub's models), in a pickled pytorch_model.bin."""
  model = hf_model(TINY, seed=1)
  model.save_pretrained(tmp_path / "saved")
  weights = load_file(tmp_path / "saved" / "model.safetensors")
  legacy = {k.replace("decoder.decoder_encoder.layer.", "decoder.decoder_layers."): v
            for k, v in weights.items()}
  assert "decoder.decoder_layers.0.attention.attention.query.weight" in legacy
  os.makedirs(tmp_path / "hub")
  torch.save(legacy, tmp_path / "hub" / "pytorch_model.bin")
  os.rename(tmp_path / "saved" / "config.json", tmp_path / "hub" / "config.json")
  imported = import_checkpoint(str(tmp_path / "hub" / "pytorch_model.bin"), str(tmp_path / "msm"))
  assert imported.layout.description == "Hugging Face ViTMAEForPreTraining"
  assert_same_as_pytorch(model, str(tmp_path / "msm"), TINY, seed=1)


def test_mae_layout_computes_the_same_and_heads_come_from_the_preset(tmp_path):
  model = hf_model(TINY, seed=2)
  save_mae_checkpoint(model, tmp_path / "checkpoint-399.pth")
  imported = import_checkpoint(str(tmp_path / "checkpoint-399.pth"), str(tmp_path / "msm"))
  assert imported.layout.format == "mae" and imported.config.variant == "tiny"
  assert imported.config.model.encoder.num_heads == 4  # the tiny preset's, not in the file
  assert_same_as_pytorch(model, str(tmp_path / "msm"), TINY, seed=2)


def test_import_then_finetune_and_continue_pretraining(tmp_path):
  """The command line import; finetuning loads the weights (init_from); launch.pretrain resumes
  from the step-0 checkpoint (at learning rate 0 the weights stay exactly the imported ones)."""
  hf_model(TINY, seed=3).save_pretrained(tmp_path / "hf")
  workdir = str(tmp_path / "msm")
  result = subprocess.run(
      [sys.executable, "-m", "launch.import_checkpoint", f"--input={tmp_path / 'hf'}",
       f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "--config.init_from=" in result.stdout and "configs/pretrain.py:tiny" in result.stdout
  assert "'--config.input_shape=(32,32,1)'" in result.stdout
  imported, _ = restore_params(workdir)

  config = finetune_config("seg_tiny")
  config.update(init_from=workdir, input_shape=(32, 32, 1))
  task = FinetuneTask(config, ("a", "b"), {"mean": 0.0, "std": 1.0})
  fresh = jax.eval_shape(task.init_params, jax.random.key(0))
  loaded = task.pretrained_params(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), fresh))
  for name in ("patch_embed", "cls", "transformer"):
    jax.tree.map(np.testing.assert_array_equal, loaded["encoder"][name],
                 imported["encoder"][name])
  jax.tree.map(np.testing.assert_array_equal, loaded["decoder"]["embed"],
               imported["decoder"]["embed"])

  config = pretrain_config("tiny")
  config.update(input_shape=(32, 32, 1), batch_size=8, total_steps=1, warmup_steps=0,
                base_lr=0.0, log_every=1, checkpoint_every=1, figure_every=0)
  state = pretrain(config, workdir)
  assert int(state.step) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), imported)


def tampered(tensors: dict, change: str) -> dict:
  tensors = dict(tensors)
  if change == "extra":
    tensors["decoder_blocks.0.attn.rel_pos"] = torch.zeros(4)
  elif change == "missing":
    del tensors["blocks.1.mlp.fc2.bias"]
  elif change == "patch":  # a decoder predicting 4x4 patches under an 8x8 patch embedding
    tensors["decoder_pred.weight"] = torch.zeros(16, 32)
    tensors["decoder_pred.bias"] = torch.zeros(16)
  elif change == "learned_position":
    tensors["pos_embed"] = tensors["pos_embed"] + 0.01
  return tensors


@pytest.mark.parametrize("change, message", [
    ("extra", "tensor 'decoder_blocks.0.attn.rel_pos' .*has no place"),
    ("missing", "tensor 'blocks.1.mlp.fc2.bias' is missing"),
    ("patch", r"tensor 'decoder_pred.weight' has shape \(16, 32\).* needs \(64, 32\)"),
    ("learned_position", "tensor 'pos_embed' is not MAE's fixed 2-D sin-cos"),
])
def test_unmappable_tensors_fail_naming_the_tensor(tmp_path, change, message):
  path = tmp_path / "weights.safetensors"
  save_file(tampered(mae_state_dict(hf_model(TINY)), change), path)
  with pytest.raises(CheckpointImportError, match=f"{re.escape(str(path))}: {message}"):
    import_checkpoint(str(path), str(tmp_path / "msm"))
  assert not os.path.exists(tmp_path / "msm")  # nothing written


def test_bad_files_fail_clearly(tmp_path):
  good = tmp_path / "good.pth"
  save_mae_checkpoint(hf_model(TINY), good)
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(good.read_bytes()[:5000])
  with pytest.raises(CheckpointImportError, match="truncated.pth: not a readable PyTorch"):
    import_checkpoint(str(truncated), str(tmp_path / "a"))
  save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
  with pytest.raises(CheckpointImportError, match="no tensor names of an MAE or Hugging Face"):
    import_checkpoint(str(tmp_path / "other.safetensors"), str(tmp_path / "b"))
  with pytest.raises(CheckpointImportError, match="no tensor names of the hf layout"):
    import_checkpoint(str(good), str(tmp_path / "c"), format_name="hf")
  wide = tmp_path / "wide.pth"  # no preset has these shapes: MAE files do not store heads
  state = mae_state_dict(hf_model(dict(TINY, intermediate_size=96)))
  torch.save(state, wide)
  with pytest.raises(CheckpointImportError, match="pass --num_heads"):
    import_checkpoint(str(wide), str(tmp_path / "d"))
  with pytest.raises(CheckpointImportError, match="does not split into 3 attention heads"):
    import_checkpoint(str(wide), str(tmp_path / "d"), num_heads=3, decoder_num_heads=2)
  hf_model(TINY).save_pretrained(tmp_path / "hf")
  with pytest.raises(CheckpointImportError, match="are for MAE checkpoints only"):
    import_checkpoint(str(tmp_path / "hf"), str(tmp_path / "e"), num_heads=4)
  settings = json.loads((tmp_path / "hf" / "config.json").read_text())
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**settings, "hidden_act": "relu"}))
  with pytest.raises(CheckpointImportError, match="config.json: hidden_act='relu'"):
    import_checkpoint(str(tmp_path / "hf"), str(tmp_path / "e"))
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**settings, "patch_size": 4}))
  with pytest.raises(CheckpointImportError, match="config.json has patch_size=4 but the weights"):
    import_checkpoint(str(tmp_path / "hf" / "model.safetensors"), str(tmp_path / "e"))
  os.makedirs(tmp_path / "used")
  (tmp_path / "used" / "x").write_text("")
  with pytest.raises(CheckpointImportError, match="is not empty"):
    import_checkpoint(str(good), str(tmp_path / "used"))


class _RunsCode:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (self.marker,))


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
  """Written by torch.save (refused at the code's global) and by pickle.dump (refused at an
  opcode); the command line says so in one line, without a traceback."""
  marker = str(tmp_path / "code_ran")
  payload = {"model": {"cls_token": torch.zeros(1, 1, 64)}, "epoch": _RunsCode(marker)}
  torch.save(payload, tmp_path / "torch_saved.pth")
  with open(tmp_path / "pickled.pth", "wb") as f:
    pickle.dump(payload, f)
  with pytest.raises(CheckpointImportError, match="pickled.pth: refused to load it"):
    import_checkpoint(str(tmp_path / "pickled.pth"), str(tmp_path / "msm"))
  path = tmp_path / "torch_saved.pth"
  result = subprocess.run(
      [sys.executable, "-m", "launch.import_checkpoint", f"--input={path}",
       f"--workdir={tmp_path / 'msm'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  assert f"{path}: refused to load it: its pickle holds more than tensors" in lines[0]
  assert "GLOBAL posix.mkdir" in lines[0]
  assert not os.path.exists(marker) and not os.path.exists(tmp_path / "msm")


def test_paper_normalization_is_the_papers_pipeline():
  power = np.random.default_rng(0).exponential(1e-9, size=(4, 8, 8, 1)).astype(np.float32)
  power[0, 0, 0, 0] = 0.0  # the floor: 1e-12, i.e. -120 dB
  paper = ((10 * np.log10(power.astype(np.float64) + 1e-12) + 120) / 119.5 - 0.451) / 0.043
  np.testing.assert_allclose(normalize(power, PAPER_STATS), paper, rtol=1e-5, atol=1e-5)
  config = finetune_config("seg_tiny")
  config.data.update(normalization="paper", generator="synthetic", num_examples=0)
  source = make_source(config.data, (16, 16, 1), seed=0)
  assert source.stats == PAPER_STATS
  image = next(source.batches(global_batch_size=1, start_step=0))["image"][0]
  np.testing.assert_allclose(image, normalize(source.power(0), PAPER_STATS), rtol=1e-6)
  config.data.normalization = "imagenet"
  with pytest.raises(ValueError, match="config.data.normalization='imagenet'"):
    make_source(config.data, (16, 16, 1), seed=0)
