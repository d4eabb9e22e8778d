"""Exact GELU of a Dense layer's output plus its bias, on CPU by the C++ kernel in gelu_cpu.cc
(float32).

One pass forward (instead of XLA's two) and one backward that also sums the bias gradient; the
backward recomputes erf from the saved pre-activation instead of saving it. Under jit over a
device mesh each device runs the kernel on its own samples, as for LayerNorm.
"""
import jax
import jax.numpy as jnp

from msm_jax.kernels import native, partitioning

_FORWARD, _BACKWARD = "msm_gelu_forward", "msm_gelu_backward"
_VECTOR = 16  # the kernel's vector width: the last axis must be a multiple of it
_SOURCE = "gelu_cpu.cc"
_HANDLERS = {_FORWARD: "MsmGeluForward", _BACKWARD: "MsmGeluBackward"}  # target: symbol


def supports(h) -> bool:
  """Whether the kernel takes h (float32, at least 2-D, last axis a multiple of 16) and could be
  built here."""
  return (h.dtype == jnp.float32 and h.ndim >= 2 and h.shape[-1] % _VECTOR == 0
          and native.register(_SOURCE, **_HANDLERS))


_X, _VEC, _, _SAMPLES = partitioning.BATCH_LAYOUT_ROLES
_WHOLE = ("n", "d")  # tokens and width


def _forward_call(h, bias):
  native.require(_SOURCE, **_HANDLERS)
  return (jax.ffi.ffi_call(_FORWARD, jax.ShapeDtypeStruct(h.shape, h.dtype))(h, bias),)


def _backward_call(h, bias, dy):
  native.require(_SOURCE, **_HANDLERS)
  per_sample = jax.ShapeDtypeStruct((h.shape[0], h.shape[2]), h.dtype)
  shapes = (jax.ShapeDtypeStruct(h.shape, h.dtype), per_sample)
  return tuple(jax.ffi.ffi_call(_BACKWARD, shapes)(h, bias, dy))


_forward = partitioning.partitioned(
    _forward_call, partitioning.batch_layouts, (_X, _VEC), (_X,), "b n d, d -> b n d", _WHOLE)
_backward = partitioning.partitioned(
    _backward_call, partitioning.batch_layouts, (_X, _VEC, _X), (_X, _SAMPLES),
    "b n d, d, b n d -> b n d, b d", _WHOLE)


@jax.custom_vjp
def _gelu(h, bias):
  return _forward(h, bias)[0]


def _vjp_forward(h, bias):
  return _gelu(h, bias), (h, bias)


def _vjp_backward(residuals, dy):
  dh, dbias = _backward(*residuals, dy)
  return dh, dbias.sum(0)


_gelu.defvjp(_vjp_forward, _vjp_backward)


def gelu(h, bias):
  """gelu(h + bias), the exact (erf) GELU; h (B, ..., D) float32, bias (D,) float32."""
  h3 = h.reshape(h.shape[0], -1, h.shape[-1])
  return _gelu(h3, bias).reshape(h.shape)
