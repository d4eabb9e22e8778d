"""An MAE-style PyTorch state dict (mae_layouts.py) as the parameters of msm-jax's
MaskedSpectrogramModel, computing the same function.

The networks are the same (pre-norm ViT blocks, exact GELU, LayerNorm eps 1e-6, a CLS token
without position, the decoder's mask token and sin-cos embedding); what differs is the storage:
- PyTorch Linear weights are (out, in); Dense kernels (in, out). The conv patch embedding
  (D, C, ph, pw) becomes the Dense kernel over patch vectors laid out (ph, pw, C) (patches.py).
- Hugging Face's query, key and value projections are concatenated into one fused qkv, [q; k; v]
  as timm's: the output splits (3, heads, head_dim) in both.
- The fixed sin-cos position embedding: MAE's orders its channels [sin(col), cos(col), sin(row),
  cos(row)] (its meshgrid puts the column first), msm-jax's [sin(row), cos(row), sin(col),
  cos(col)], with the same frequencies: one is the other with its two halves swapped. LayerNorm,
  attention and the MLP commute with a permutation of the residual stream's channels applied
  to every tensor that reads or writes it, so the import permutes them (`swap_halves`) rather
  than adding a model option: the encoder's and decoder's residual streams are MAE's with their
  halves swapped, reconstructions and losses are equal, and the encoder's features are MAE's
  with their halves swapped (a head learns on them all the same).
The stored position embeddings must be that fixed embedding: a learned one cannot be imported.
"""
import dataclasses

import numpy as np

from msm_jax.checkpoint.mae_layouts import Layout, block_indices
from msm_jax.checkpoint.torch_files import CheckpointImportError
from msm_jax.models.posemb import sincos_2d

POSITION_TOLERANCE = 1e-5  # float32 storage of a float64 computation is within ~1e-7


def swap_halves(width: int) -> np.ndarray:
  """The channel permutation between MAE's position embedding and ours (its own inverse)."""
  return np.concatenate([np.arange(width // 2, width), np.arange(width // 2)])


@dataclasses.dataclass(frozen=True)
class Architecture:
  """The network a checkpoint holds, in msm-jax's terms (config.model, config.input_shape)."""
  patch_size: tuple[int, int]
  channels: int
  grid: tuple[int, int]
  encoder: dict  # width, depth, mlp_dim (and num_heads: with_heads), as in presets.py
  decoder: dict

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return (self.grid[0] * self.patch_size[0], self.grid[1] * self.patch_size[1], self.channels)


class _Tensors:
  """The checkpoint's tensors; `take` checks a tensor's shape and marks it used, so that what no
  parameter used is reported rather than skipped."""

  def __init__(self, tensors: dict, path: str):
    self._tensors, self._unused, self.path = tensors, set(tensors), path

  def shape(self, name: str, ndim: int) -> tuple[int, ...]:
    if name not in self._tensors:
      raise CheckpointImportError(f"{self.path}: tensor {name!r} is missing.")
    shape = tuple(self._tensors[name].shape)
    if len(shape) != ndim:
      raise CheckpointImportError(f"{self.path}: tensor {name!r} has shape {shape}; a "
                                  f"{ndim}-D tensor was expected.")
    return shape

  def take(self, name: str, shape) -> np.ndarray:
    self.shape(name, len(shape))
    value = self._tensors[name]
    if value.shape != tuple(shape):
      raise CheckpointImportError(f"{self.path}: tensor {name!r} has shape {value.shape}; the "
                                  f"msm-jax model it maps onto needs {tuple(shape)}.")
    self._unused.discard(name)
    return value

  def check_all_used(self):
    if self._unused:
      first = sorted(self._unused)[0]
      raise CheckpointImportError(
          f"{self.path}: tensor {first!r} ({len(self._unused)} in all) has no place in an "
          "msm-jax MSM model; nothing is imported partially.")


def infer_architecture(tensors: dict, layout: Layout, path: str) -> Architecture:
  """The shapes of the network in `tensors`, without head counts (see `with_heads`)."""
  t = _Tensors(tensors, path)
  width, channels, ph, pw = t.shape(f"{layout.patch_embed}.weight", 4)
  _, positions, _ = t.shape(layout.pos_embed, 3)
  side = int(round((positions - 1) ** 0.5))
  if side * side != positions - 1:
    raise CheckpointImportError(
        f"{path}: tensor {layout.pos_embed!r} has {positions} positions, not 1 + a square grid "
        "of patches as MAE's fixed sin-cos embedding.")

  def stack(block: str, width: int) -> dict:
    depth = max(block_indices(tensors, block), default=-1) + 1
    first = block.format(i=0)
    if not depth:
      raise CheckpointImportError(f"{path}: no tensors of blocks {first}* were found.")
    if width % 4:
      raise CheckpointImportError(f"{path}: width {width} of {first}* is not divisible by 4, "
                                  "as the sin-cos position embedding needs.")
    return dict(width=width, depth=depth, mlp_dim=t.shape(f"{first}{layout.fc1}.weight", 2)[0])

  decoder_width = t.shape(f"{layout.decoder_embed}.weight", 2)[0]
  return Architecture(patch_size=(ph, pw), channels=channels, grid=(side, side),
                      encoder=stack(layout.encoder_block, width),
                      decoder=stack(layout.decoder_block, decoder_width))


def with_heads(arch: Architecture, num_heads: int, decoder_num_heads: int,
               path: str) -> Architecture:
  """`arch` with its attention head counts, which the tensors' shapes do not tell."""
  for what, shape, heads in (("encoder", arch.encoder, num_heads),
                             ("decoder", arch.decoder, decoder_num_heads)):
    if heads < 1 or shape["width"] % heads:
      raise CheckpointImportError(f"{path}: the {what}'s width {shape['width']} does not split "
                                  f"into {heads} attention heads.")
  return dataclasses.replace(arch, encoder={**arch.encoder, "num_heads": num_heads},
                             decoder={**arch.decoder, "num_heads": decoder_num_heads})


def _dense(t: _Tensors, names, fan_in: int, fan_out: int, rows=None, columns=None) -> dict:
  """A Dense layer from PyTorch Linear module(s) `names` (outputs concatenated), with its input
  rows and output columns permuted where given."""
  names = (names,) if isinstance(names, str) else names
  part = fan_out // len(names)
  kernel = np.concatenate([t.take(f"{n}.weight", (part, fan_in)).T for n in names], axis=1)
  bias = np.concatenate([t.take(f"{n}.bias", (part,)) for n in names])
  if rows is not None:
    kernel = kernel[rows]
  if columns is not None:
    kernel, bias = kernel[:, columns], bias[columns]
  return {"kernel": kernel, "bias": bias}


def _layer_norm(t: _Tensors, name: str, width: int, channels) -> dict:
  return {"scale": t.take(f"{name}.weight", (width,))[channels],
          "bias": t.take(f"{name}.bias", (width,))[channels]}


def _transformer(t: _Tensors, layout: Layout, block: str, final_norm: str, shape: dict) -> dict:
  """A Transformer's params; its residual stream permuted by swap_halves."""
  width, mlp_dim = shape["width"], shape["mlp_dim"]
  stream = swap_halves(width)
  params = {"norm": _layer_norm(t, final_norm, width, stream)}
  for i in range(shape["depth"]):
    prefix = block.format(i=i)
    params[f"block{i}"] = {
        "norm1": _layer_norm(t, prefix + layout.norm1, width, stream),
        "attn": {
            "qkv": _dense(t, [prefix + n for n in layout.qkv], width, 3 * width, rows=stream),
            "out": _dense(t, prefix + layout.attn_out, width, width, columns=stream)},
        "norm2": _layer_norm(t, prefix + layout.norm2, width, stream),
        "mlp": {"fc1": _dense(t, prefix + layout.fc1, width, mlp_dim, rows=stream),
                "fc2": _dense(t, prefix + layout.fc2, mlp_dim, width, columns=stream)},
    }
  return params


def _check_position_embedding(t: _Tensors, name: str, grid, width: int):
  """Checks that tensor `name` is MAE's fixed sin-cos embedding of `grid`, its CLS row zero."""
  expected = np.concatenate([np.zeros((1, width), np.float32),
                             sincos_2d(tuple(grid), width)[:, swap_halves(width)]])[None]
  error = float(np.abs(t.take(name, expected.shape) - expected).max())
  if error > POSITION_TOLERANCE:
    raise CheckpointImportError(
        f"{t.path}: tensor {name!r} is not MAE's fixed 2-D sin-cos position embedding of a "
        f"{grid[0]}x{grid[1]} patch grid (largest difference {error:.3g}); msm-jax's position "
        "embeddings are fixed, so a learned or other one cannot be imported.")


def to_msm_params(tensors: dict, layout: Layout, arch: Architecture, path: str) -> dict:
  """{'encoder', 'decoder'} params of MaskedSpectrogramModel; every tensor is used exactly once."""
  t = _Tensors(tensors, path)
  (ph, pw), channels = arch.patch_size, arch.channels
  width, decoder_width = arch.encoder["width"], arch.decoder["width"]
  stream, decoder_stream = swap_halves(width), swap_halves(decoder_width)
  patch_vector = ph * pw * channels

  conv = t.take(f"{layout.patch_embed}.weight", (width, channels, ph, pw))
  _check_position_embedding(t, layout.pos_embed, arch.grid, width)
  encoder = {
      "patch_embed": {"kernel": conv.transpose(2, 3, 1, 0).reshape(patch_vector, width)[:, stream],
                      "bias": t.take(f"{layout.patch_embed}.bias", (width,))[stream]},
      "cls": t.take(layout.cls, (1, 1, width))[..., stream],
      "transformer": _transformer(t, layout, layout.encoder_block, layout.norm, arch.encoder),
  }
  _check_position_embedding(t, layout.decoder_pos_embed, arch.grid, decoder_width)
  decoder = {
      "embed": _dense(t, layout.decoder_embed, width, decoder_width, rows=stream,
                      columns=decoder_stream),
      "mask_token": t.take(layout.mask_token, (1, 1, decoder_width))[..., decoder_stream],
      "transformer": _transformer(t, layout, layout.decoder_block, layout.decoder_norm,
                                  arch.decoder),
      "pred": _dense(t, layout.decoder_pred, decoder_width, patch_vector, rows=decoder_stream),
  }
  t.check_all_used()
  return {"encoder": encoder, "decoder": decoder}
