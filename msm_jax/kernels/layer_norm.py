"""LayerNorm over the last axis on CPU by the fused C++ kernel in layer_norm_cpu.cc (float32).

One pass per row for the statistics and one for the output, rows kept in L1, instead of
XLA:CPU's slow row reductions; the backward pass is two passes per row from the saved mean and
1 / std. Under jit over a device mesh each device normalises its own samples: the batch axis
keeps its sharding, and the per-sample scale and bias gradients are summed over the batch by
XLA, which adds the cross-device reduction where the batch is split.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.kernels import native, partitioning

_FORWARD, _BACKWARD = "msm_layer_norm_forward", "msm_layer_norm_backward"
_VECTOR = 16  # the kernel's vector width: the normalised axis must be a multiple of it
_SOURCE = "layer_norm_cpu.cc"
_HANDLERS = {_FORWARD: "MsmLayerNormForward", _BACKWARD: "MsmLayerNormBackward"}  # target: symbol


def _registered() -> bool:
  return native.register(_SOURCE, **_HANDLERS)


def supports(x) -> bool:
  """Whether the kernel takes x (float32, at least 2-D, last axis a multiple of 16) and could be
  built here."""
  return (x.dtype == jnp.float32 and x.ndim >= 2 and x.shape[-1] % _VECTOR == 0
          and _registered())


_layouts = partitioning.batch_layouts
_X, _VEC, _ROWS, _SAMPLES = partitioning.BATCH_LAYOUT_ROLES
_WHOLE = ("n", "d")  # tokens and width


@functools.cache
def _forward(eps: float):
  def call(x, scale, bias):
    native.require(_SOURCE, **_HANDLERS)
    b, n, _ = x.shape
    rows = jax.ShapeDtypeStruct((b, n), x.dtype)
    shapes = (jax.ShapeDtypeStruct(x.shape, x.dtype), rows, rows)
    return tuple(jax.ffi.ffi_call(_FORWARD, shapes)(x, scale, bias, eps=np.float32(eps)))
  return partitioning.partitioned(call, _layouts, (_X, _VEC, _VEC), (_X, _ROWS, _ROWS),
                                  "b n d, d, d -> b n d, b n, b n", _WHOLE)


def _backward_call(x, scale, mean, rstd, dy):
  native.require(_SOURCE, **_HANDLERS)
  b, _, d = x.shape
  per_sample = jax.ShapeDtypeStruct((b, d), x.dtype)
  shapes = (jax.ShapeDtypeStruct(x.shape, x.dtype), per_sample, per_sample)
  return tuple(jax.ffi.ffi_call(_BACKWARD, shapes)(x, scale, mean, rstd, dy))


_backward = partitioning.partitioned(
    _backward_call, _layouts, (_X, _VEC, _ROWS, _ROWS, _X), (_X, _SAMPLES, _SAMPLES),
    "b n d, d, b n, b n, b n d -> b n d, b d, b d", _WHOLE)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x, scale, bias, eps):
  return _forward(eps)(x, scale, bias)[0]


def _vjp_forward(x, scale, bias, eps):
  y, mean, rstd = _forward(eps)(x, scale, bias)
  return y, (x, scale, mean, rstd)


def _vjp_backward(eps, residuals, dy):
  del eps  # the saved 1 / std already holds it
  dx, dscale, dbias = _backward(*residuals, dy)
  return dx, dscale.sum(0), dbias.sum(0)


_layer_norm.defvjp(_vjp_forward, _vjp_backward)


def layer_norm(x, scale, bias, eps: float):
  """(x - mean) / sqrt(var + eps) * scale + bias over x's last axis; x (B, ..., D) float32,
  scale and bias (D,) float32."""
  x3 = x.reshape(x.shape[0], -1, x.shape[-1])
  return _layer_norm(x3, scale, bias, float(eps)).reshape(x.shape)
