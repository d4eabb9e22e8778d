"""What a Hugging Face ViTMAEConfig (config.json) adds to the tensors: the head counts, the masking
and loss settings; and the settings msm-jax's model has fixed, checked rather than assumed."""
import dataclasses

from msm_jax.checkpoint.mae_convert import Architecture
from msm_jax.checkpoint.torch_files import CheckpointImportError

# transformers' ViTMAEConfig defaults, which apply to the keys a config.json leaves out.
DEFAULTS = dict(
    model_type="vit_mae", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", layer_norm_eps=1e-12, image_size=224,
    patch_size=16, num_channels=3, qkv_bias=True, decoder_num_attention_heads=16,
    decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_intermediate_size=2048,
    mask_ratio=0.75, norm_pix_loss=False)
LAYER_NORM_EPS = 1e-6  # msm-jax's (models/vit.py), MAE's


@dataclasses.dataclass(frozen=True)
class HfSettings:
  num_heads: int
  decoder_num_heads: int
  mask_ratio: float
  norm_pix_loss: bool
  notes: tuple[str, ...]  # differences that change the outputs slightly, said when importing


def _pair(value) -> tuple[int, int]:
  return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def read_settings(config: dict, path: str) -> HfSettings:
  get = lambda key: config.get(key, DEFAULTS[key])
  fixed = {"model_type": "vit_mae", "hidden_act": "gelu", "qkv_bias": True}
  for key, wanted in fixed.items():
    if get(key) != wanted:
      raise CheckpointImportError(f"{path}: {key}={get(key)!r}; msm-jax's model has "
                                  f"{key}={wanted!r} only.")
  notes = []
  if get("layer_norm_eps") != LAYER_NORM_EPS:
    notes.append(
        f"{path}: layer_norm_eps={get('layer_norm_eps')!r}, msm-jax's LayerNorm uses "
        f"{LAYER_NORM_EPS}: outputs differ only where a token's variance is near that epsilon.")
  return HfSettings(get("num_attention_heads"), get("decoder_num_attention_heads"),
                    float(get("mask_ratio")), bool(get("norm_pix_loss")), tuple(notes))


def check_architecture(config: dict, arch: Architecture, path: str):
  """Raises naming the config.json key that disagrees with the shapes of the weights."""
  held = {
      "hidden_size": arch.encoder["width"], "num_hidden_layers": arch.encoder["depth"],
      "intermediate_size": arch.encoder["mlp_dim"], "decoder_hidden_size": arch.decoder["width"],
      "decoder_num_hidden_layers": arch.decoder["depth"],
      "decoder_intermediate_size": arch.decoder["mlp_dim"], "num_channels": arch.channels,
      "patch_size": arch.patch_size, "image_size": arch.input_shape[:2]}
  for key, value in held.items():
    stated = config.get(key, DEFAULTS[key])
    if (_pair(stated) if isinstance(value, tuple) else stated) != value:
      raise CheckpointImportError(f"{path}: config.json has {key}={stated!r} but the weights "
                                  f"hold {value!r}.")
