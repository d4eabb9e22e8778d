"""Initialising a finetuning model from a pretraining checkpoint.

The encoder (and, for segmentation, the decoder's input projection and first blocks) are loaded by
name; the task head stays freshly initialised. Two differences are adapted rather than refused:
- another input size: position embeddings are fixed sin-cos built for the new grid, nothing to do;
- another channel count (1 pretrained channel -> 3 CSI antennas): the patch-embedding kernel is
  averaged over the pretrained channels and shared equally by the new ones, so an input whose
  channels are all equal to x embeds exactly as x did in pretraining.
Anything else (patch size, widths, depths, heads) cannot be adapted and fails naming the field.
"""
import numpy as np
from flax import traverse_util

ENCODER_FIELDS = ("width", "depth", "num_heads", "mlp_dim")
DECODER_FIELDS = ("width", "num_heads", "mlp_dim")  # the finetuning head uses only the first blocks


def check_compatible(model_config, pretrained: dict, init_from: str, decoder_depth: int = 0):
  """Raises ValueError naming the config field whose value the checkpoint cannot provide."""
  def require(field, wanted, stored):
    if wanted != stored:
      raise ValueError(
          f"config.model.{field}={wanted!r} but the checkpoint in config.init_from={init_from!r} "
          f"has {stored!r}; this cannot be adapted. Use the finetuning variant of the pretraining "
          "variant (e.g. har_tiny for tiny) or set the field to the checkpoint's value.")

  require("patch_size", tuple(model_config.patch_size), tuple(pretrained["patch_size"]))
  require("use_cls", bool(model_config.use_cls), bool(pretrained["use_cls"]))
  for field in ENCODER_FIELDS:
    require(f"encoder.{field}", model_config.encoder[field], pretrained["encoder"][field])
  if decoder_depth:
    for field in DECODER_FIELDS:
      require(f"decoder.{field}", model_config.decoder[field], pretrained["decoder"][field])
    if decoder_depth > pretrained["decoder"]["depth"]:
      raise ValueError(f"config.decoder_blocks={decoder_depth} exceeds the "
                       f"{pretrained['decoder']['depth']} decoder blocks of the checkpoint in "
                       f"config.init_from={init_from!r}.")


def adapt_patch_embed(kernel: np.ndarray, patch_size, channels: int) -> np.ndarray:
  """(ph*pw*C_pre, width) -> (ph*pw*channels, width); patch vectors are laid out (ph, pw, C)."""
  ph, pw = patch_size
  pre = kernel.reshape(ph, pw, -1, kernel.shape[-1])
  if pre.shape[2] == channels:
    return kernel
  shared = pre.mean(axis=2, keepdims=True) / channels
  return np.repeat(shared, channels, axis=2).reshape(ph * pw * channels, -1).astype(kernel.dtype)


def merge_pretrained(params: dict, pretrained: dict, patch_size) -> tuple[dict, list[str]]:
  """Returns (params with every pretrained leaf they share by name loaded, loaded paths).

  `params` is the freshly initialised finetuning tree (host arrays), `pretrained` the MSM params
  ({'encoder', 'decoder'}). A shared name whose shape differs is an error (after adapting the
  patch embedding), never a silent skip.
  """
  flat = traverse_util.flatten_dict(params, sep="/")
  source = traverse_util.flatten_dict(pretrained, sep="/")
  channels = None
  if "encoder/patch_embed/kernel" in flat:
    channels = flat["encoder/patch_embed/kernel"].shape[0] // (patch_size[0] * patch_size[1])
  loaded = []
  for path, value in flat.items():
    if path not in source:
      continue
    stored = np.asarray(source[path])
    if path == "encoder/patch_embed/kernel":
      stored = adapt_patch_embed(stored, patch_size, channels)
    if stored.shape != value.shape:
      raise ValueError(f"pretrained parameter {path} has shape {stored.shape}, the finetuning "
                       f"model needs {value.shape}.")
    flat[path] = stored.astype(value.dtype)
    loaded.append(path)
  if not any(p.startswith("encoder/") for p in loaded):
    raise ValueError("the checkpoint holds no encoder parameters under the finetuning names.")
  return traverse_util.unflatten_dict(flat, sep="/"), loaded
