"""Importing MAE-style PyTorch checkpoints (the radio foundation model paper's released MSM
weights in facebookresearch/mae's layout, Hugging Face ViTMAEForPreTraining models) as msm-jax
pretraining workdirs: launch.import_checkpoint's work, callable from Python too.

The workdir is an ordinary one: a checkpoint at step 0 with the items 'state', 'encoder' and
'model_config', and config.json, the pretraining config of the imported network. Finetuning loads
it with config.init_from, launch.pretrain continues pretraining from it.
"""
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections

from configs import pretrain as pretrain_configs
from msm_jax.checkpoint import hf_config
from msm_jax.checkpoint.mae_convert import (Architecture, infer_architecture, to_msm_params,
                                            with_heads)
from msm_jax.checkpoint.mae_layouts import FORMATS, Layout, detect_layout, layouts_of
from msm_jax.checkpoint.manager import Checkpointer
from msm_jax.checkpoint.torch_files import (HF_CONFIG_FILE, CheckpointImportError,
                                            read_hf_config, read_hf_directory, read_tensors)
from msm_jax.models.presets import DECODERS, ENCODERS

IMPORTED = "imported"  # config.model.encoder_name / decoder_name of a network that is no preset


@dataclasses.dataclass(frozen=True)
class Imported:
  """What was imported, and how to use it."""
  workdir: str
  layout: Layout
  config: ml_collections.ConfigDict  # the pretraining config of the weights
  # --config.FIELD=VALUE flags that turn configs/pretrain.py:config.variant into `config`
  overrides: tuple[str, ...]
  notes: tuple[str, ...]  # small numerical differences worth knowing


def _read(path: str, format_name: str | None):
  """(tensors, layout, config.json dict or None, weight file) of --input."""
  if format_name not in (None,) + FORMATS:
    raise CheckpointImportError(f"--format={format_name!r} must be one of {FORMATS}.")
  tensors, weights = read_hf_directory(path) if os.path.isdir(path) else (read_tensors(path), path)
  layout = detect_layout(tensors, format_name)
  if layout is None:
    wanted = f"the {format_name} layout" if format_name else "an MAE or Hugging Face layout"
    examples = sorted({f"{l.patch_embed}.weight" for l in layouts_of(format_name)})
    raise CheckpointImportError(
        f"{weights}: no tensor names of {wanted} (such as {' or '.join(examples)}); its first "
        f"are {sorted(tensors)[:3]}.")
  config = read_hf_config(os.path.dirname(weights)) if layout.format == "hf" else None
  return tensors, layout, config, weights


def _preset_heads(table: dict, shape: dict, flag: str, what: str, path: str) -> int:
  """The head count of the preset with these width, depth and MLP (MAE files do not store it)."""
  for preset in table.values():
    if all(preset[k] == shape[k] for k in ("width", "depth", "mlp_dim")):
      return preset["num_heads"]
  raise CheckpointImportError(
      f"{path}: the {what} (width {shape['width']}, {shape['depth']} blocks, MLP "
      f"{shape['mlp_dim']}) is no msm-jax preset, and MAE checkpoints do not store the number of "
      f"attention heads: pass --{flag}.")


def _preset_name(table: dict, shape: dict) -> str:
  return next((name for name, preset in table.items() if preset == shape), IMPORTED)


def pretrain_config(arch: Architecture, **fields) -> ml_collections.ConfigDict:
  """The pretraining config of `arch`, from the configs/pretrain.py variant (config.variant) of
  the same encoder where there is one (so the paper's weights get the paper's recipe), else
  vit_s's; `fields` set top-level fields (mask_ratio, norm_pix_loss)."""
  variant = _preset_name(ENCODERS, arch.encoder)
  config = pretrain_configs.get_config("vit_s" if variant == IMPORTED else variant)
  config.input_shape = arch.input_shape
  config.model.encoder_name = variant
  config.model.encoder = dict(arch.encoder)
  config.model.decoder_name = _preset_name(DECODERS, arch.decoder)
  config.model.decoder = dict(arch.decoder)
  config.model.patch_size = arch.patch_size
  config.update(fields)
  return config


def _command_line_value(value) -> str:
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(str(v) for v in value) + ")"
  return str(value)


def config_overrides(config) -> tuple[str, ...]:
  """--config.FIELD=VALUE flags that turn configs/pretrain.py:`config.variant` into `config`."""
  base = pretrain_configs.get_config(config.variant)
  flat = lambda c: dict(_flatten(c.to_dict()))
  base_values, values = flat(base), flat(config)
  return tuple(f"--config.{k}={_command_line_value(v)}" for k, v in values.items()
               if _command_line_value(base_values.get(k)) != _command_line_value(v))


def _flatten(tree: dict, prefix: str = ""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def write_workdir(workdir: str, config, params: dict):
  """Writes `params` as the step-0 checkpoint of an MSM pretraining run of `config`, with the
  train state (fresh optimizer state) the pretraining loop builds for that config."""
  from msm_jax.training.loop import TrainState, create_train_state
  from msm_jax.training.optimizer import learning_rate_schedule
  from msm_jax.training.pretrain import MsmTask
  task = MsmTask(config)
  tx = task.make_optimizer(config, learning_rate_schedule(config))
  fresh = jax.eval_shape(functools.partial(create_train_state, task, tx),
                         jax.random.key(config.seed))
  params = jax.tree.map(jnp.asarray, params)
  state = jax.jit(lambda p: TrainState.create(apply_fn=None, params=p, tx=tx))(params)
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  if shapes(state) != shapes(fresh):  # a conversion bug, never a user error
    raise AssertionError("the imported train state does not have the pretraining state's shapes")
  encoder, description = task.export(state.params)
  with Checkpointer(workdir, max_to_keep=config.keep_checkpoints, async_save=False) as ckpt:
    ckpt.save(0, state, encoder, description, force=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))


def import_checkpoint(path: str, workdir: str, format_name: str | None = None,
                      num_heads: int | None = None,
                      decoder_num_heads: int | None = None) -> Imported:
  """Imports the checkpoint at `path` (a file, or a Hugging Face save_pretrained directory) into
  the new pretraining workdir `workdir`. Raises CheckpointImportError naming the file and the
  tensor or key for anything that does not map onto an msm-jax model; writes nothing then."""
  if os.path.isdir(workdir) and os.listdir(workdir):
    raise CheckpointImportError(f"--workdir={workdir} is not empty; import into a new directory.")
  tensors, layout, config_json, weights = _read(path, format_name)
  arch = infer_architecture(tensors, layout, weights)
  notes, fields = (), {}
  if layout.format == "hf":
    config_path = os.path.join(os.path.dirname(weights), HF_CONFIG_FILE)
    if num_heads or decoder_num_heads:
      raise CheckpointImportError(f"{config_path} states the attention heads; --num_heads and "
                                  "--decoder_num_heads are for MAE checkpoints only.")
    settings = hf_config.read_settings(config_json, config_path)
    hf_config.check_architecture(config_json, arch, config_path)
    num_heads, decoder_num_heads = settings.num_heads, settings.decoder_num_heads
    fields = dict(mask_ratio=settings.mask_ratio, norm_pix_loss=settings.norm_pix_loss)
    notes = settings.notes
  else:  # MAE files do not store head counts: the flags, else the preset of the same shape
    num_heads = num_heads or _preset_heads(ENCODERS, arch.encoder, "num_heads", "encoder",
                                           weights)
    decoder_num_heads = decoder_num_heads or _preset_heads(
        DECODERS, arch.decoder, "decoder_num_heads", "decoder", weights)
  arch = with_heads(arch, num_heads, decoder_num_heads, weights)
  params = to_msm_params(tensors, layout, arch, weights)
  config = pretrain_config(arch, **fields)
  write_workdir(workdir, config, params)
  return Imported(workdir, layout, config, config_overrides(config), notes)
