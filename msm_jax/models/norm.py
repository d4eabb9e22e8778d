"""The LayerNorm of every model here: flax's nn.LayerNorm, by msm_jax/kernels' fused C++ kernel
on CPU in float32 (where msm_jax.cpu_kernels' switch is on, the default there).

XLA:CPU's row reductions made LayerNorm 6-8% of the paper's ViT-S MSM train step; the kernel
takes most of that off (docs/performance.md). Same parameters, names and defaults as
nn.LayerNorm; where the kernel does not apply (another platform, another dtype, a width that is
not a multiple of 16, options other than a plain last-axis norm with scale and bias, no C++
compiler, the switch off) flax's own computation runs.
"""
import flax.linen as nn
import jax.numpy as jnp

from msm_jax import cpu_kernels


class LayerNorm(nn.LayerNorm):

  def _uses_cpu_kernel(self, x) -> bool:
    return (self.dtype in (None, jnp.float32) and self.param_dtype == jnp.float32
            and self.use_bias and self.use_scale and self.reduction_axes == -1
            and self.feature_axes == -1 and self.axis_name is None
            and cpu_kernels.supports("layer_norm", x))

  @nn.compact
  def __call__(self, x, *, mask=None):
    if mask is not None or not self._uses_cpu_kernel(x):
      return super().__call__(x, mask=mask)
    features = (x.shape[-1],)
    scale = self.param("scale", self.scale_init, features, self.param_dtype)
    bias = self.param("bias", self.bias_init, features, self.param_dtype)
    return cpu_kernels.kernel("layer_norm").layer_norm(x, scale, bias, self.epsilon)
