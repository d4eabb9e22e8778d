"""Models from the `config.model` block, and the JSON description stored with checkpoints."""
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from msm_jax.models.msm import Decoder, Encoder, MaskedSpectrogramModel

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
AUTO = "auto"


def resolve_dtype(name: str) -> str:
  """config.model.dtype as the name of the dtype that runs here: 'auto' is bfloat16 on an
  accelerator and float32 on CPU, where XLA's bfloat16 products are no faster and the C++ kernels
  are float32 only."""
  if name == AUTO:
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
  if name not in DTYPES:
    raise ValueError(f"config.model.dtype={name!r}: choose one of {sorted(DTYPES) + [AUTO]}")
  return name


def compute_dtype(name: str):
  return DTYPES[resolve_dtype(name)]


def model_description(model_config: Mapping[str, Any], input_shape: Sequence[int]) -> dict:
  """Plain-JSON description of the network; stored with every checkpoint for finetuning."""
  desc = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in dict(model_config).items()}
  desc["patch_size"] = list(desc["patch_size"])
  desc["input_shape"] = list(input_shape)
  return desc


def build_encoder(model_config: Mapping[str, Any], **overrides) -> Encoder:
  enc = model_config["encoder"]
  fields = dict(patch_size=tuple(model_config["patch_size"]), width=enc["width"],
                depth=enc["depth"], num_heads=enc["num_heads"], mlp_dim=enc["mlp_dim"],
                use_cls=model_config["use_cls"], drop_path=model_config.get("drop_path", 0.0),
                dtype=compute_dtype(model_config["dtype"]))
  fields.update(overrides)
  return Encoder(**fields)


def build_msm(model_config: Mapping[str, Any], channels: int) -> MaskedSpectrogramModel:
  dec = model_config["decoder"]
  decoder = Decoder(patch_size=tuple(model_config["patch_size"]), channels=channels,
                    width=dec["width"], depth=dec["depth"], num_heads=dec["num_heads"],
                    mlp_dim=dec["mlp_dim"], use_cls=model_config["use_cls"],
                    dtype=compute_dtype(model_config["dtype"]))
  return MaskedSpectrogramModel(encoder=build_encoder(model_config), decoder=decoder)
