"""The Dense layer of every model here: flax's nn.Dense with a hand-written backward pass.

Why: the kernel gradient x^T dy contracts the token axis, the major axis of both x (T, in) and
dy (T, out), so one operand has to be transposed in memory first. XLA:CPU picks either, often
the wider one (e.g. dy (T, 1024) rather than x (T, 256) for an MLP's first layer). Here the
narrower operand is transposed and the product is kept in the layout it is computed in (an
optimization barrier stops XLA from folding the transpose back into the product and choosing
again); where that product is (out, in), on CPU it is then transposed once into the kernel's
layout before the optimizer reads it (msm_jax/kernels/transpose.py, with the CPU kernels on).
Same parameters, names and values as nn.Dense; about 7% less time per ViT-S MSM train step on
CPU (docs/performance.md).

`Dense(..., epilogue=f)` returns f(x @ kernel, bias) instead of their sum, so that what follows
the layer can add the bias in its own pass over the output: `bias_gelu` (the MLP's first layer;
on CPU in float32 one C++ kernel, msm_jax/kernels/gelu.py, behind msm_jax.cpu_kernels' switch)
and the attention kernel (the QKV projection, msm_jax/models/vit.py).
"""
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from msm_jax import cpu_kernels


def _matmul(x, kernel):
  return jnp.einsum("...i,io->...o", x, kernel)


def _matmul_fwd(x, kernel):
  return _matmul(x, kernel), (x, kernel)


def _matmul_bwd(residuals, dy):
  x, kernel = residuals
  dx = jnp.einsum("...o,io->...i", dy, kernel)
  x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
  if x2.shape[1] <= dy2.shape[1]:
    dkernel = jax.lax.optimization_barrier(x2.T @ dy2)
  else:
    product = jax.lax.optimization_barrier(dy2.T @ x2)  # (out, in)
    if cpu_kernels.enabled():  # transposed once, in memory, before the optimizer reads it
      dkernel = cpu_kernels.kernel("transpose").transpose(product)
    else:
      dkernel = product.T
  return dx, dkernel.astype(kernel.dtype)


matmul = jax.custom_vjp(_matmul)
matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _dot_general(x, kernel, dimension_numbers, precision=None, preferred_element_type=None):
  """nn.Dense's call: x's last axis against the kernel's first, nothing batched."""
  del dimension_numbers, precision, preferred_element_type
  return matmul(x, kernel)


def gelu(x):
  """Exact (erf) GELU, as in the MAE/ViT reference. Written with erf: jax.nn.gelu's exact form
  goes through erfc, which XLA:CPU evaluates ~1.5x slower, for the same values to 1e-6."""
  return 0.5 * x * (1 + jax.lax.erf(x * jnp.asarray(2**-0.5, x.dtype)))


def uses_cpu_gelu_kernel(h) -> bool:
  return cpu_kernels.supports("gelu", h)


def bias_gelu(h, bias):
  """gelu(h + bias): the C++ kernel on CPU where it runs, else the formula."""
  if uses_cpu_gelu_kernel(h):
    return cpu_kernels.kernel("gelu").gelu(h, bias)
  return gelu(h + bias)


class Dense(nn.Dense):
  dot_general: Any = _dot_general
  # epilogue(x @ kernel, bias) -> the layer's output, in place of their sum.
  epilogue: Optional[Callable[[Any, Any], Any]] = None

  @nn.compact
  def __call__(self, inputs):
    if self.epilogue is None:
      return super().__call__(inputs)
    if not self.use_bias:
      raise ValueError("Dense(epilogue=...) needs use_bias=True: the epilogue adds the bias")
    kernel = self.param("kernel", self.kernel_init, (inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    return self.epilogue(matmul(inputs, kernel), bias)
