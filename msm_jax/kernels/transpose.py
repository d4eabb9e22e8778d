"""The transpose of a matrix on CPU, written once into memory: by the C++ kernel in
transpose_cpu.cc for float32 (16 x 16 register tiles, ~1.4x faster than XLA:CPU's transpose: 2.6
against 3.6-3.9 ms for 512 x 2048; a copy takes 1.3-1.6), else by XLA pinned to a row-major
layout. Used for the kernel gradients of Dense layers wider in than out (models/dense.py)."""
import jax
import jax.numpy as jnp
from jax.experimental.layout import Layout, with_layout_constraint

from msm_jax.kernels import native

_TARGET = "msm_transpose"
_SOURCE = "transpose_cpu.cc"
_HANDLERS = {_TARGET: "MsmTranspose"}
_ROW_MAJOR = Layout(major_to_minor=(0, 1))


def supports(x) -> bool:
  """Whether the kernel takes x (a float32 matrix, on CPU) and could be built here."""
  return (jax.devices()[0].platform == "cpu" and x.dtype == jnp.float32 and x.ndim == 2
          and native.register(_SOURCE, **_HANDLERS))


def transpose(x):
  """x.T of a matrix, materialised in row-major order: by the kernel where it takes x."""
  if supports(x):
    return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct(x.shape[::-1], x.dtype))(x)
  # Left to itself XLA:CPU folds the transpose into every consumer (AdamW's moment updates, the
  # gradient norm), each then reading the gradient with a large stride: ~100 ms per ViT-S step.
  return jax.lax.optimization_barrier(with_layout_constraint(x.T, _ROW_MAJOR))
