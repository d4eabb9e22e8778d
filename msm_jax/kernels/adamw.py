"""AdamW's update of a float32 parameter in one pass on CPU, by the C++ kernel in adamw_cpu.cc.

One read of the parameter, its gradient and both moments and one write of the parameter and
the moments, in place, instead of XLA:CPU's separate passes per moment and for the parameter.
Elementwise, so under jit over a device mesh each device updates its own copy (the parameters
are replicated) and nothing is gathered.
"""
import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.kernels import native

_TARGET = "msm_adamw_update"
_SOURCE = "adamw_cpu.cc"
_HANDLERS = {_TARGET: "MsmAdamwUpdate"}


def supports(params) -> bool:
  """Whether the kernel takes every leaf of `params` (float32, on CPU) and could be built here."""
  return (jax.devices()[0].platform == "cpu"
          and all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
          and native.register(_SOURCE, **_HANDLERS))


def update(param, grad, mu, nu, scalars, *, b1: float, b2: float, eps: float,
           weight_decay: float):
  """(param, mu, nu) after one AdamW step on grad x scale; scalars = (-lr, 1 / (1 - b1^t),
  1 / (1 - b2^t), scale) as a float32 (4,) array, t the step count after this update. The
  results alias param, mu and nu (XLA copies an input only where it is still read later)."""
  native.require(_SOURCE, **_HANDLERS)
  shape = jax.ShapeDtypeStruct(param.shape, param.dtype)
  call = jax.ffi.ffi_call(_TARGET, (shape, shape, shape), input_output_aliases={0: 0, 2: 1, 3: 2})
  return tuple(call(param, grad, mu, nu, scalars, b1=np.float32(b1),
                    one_minus_b1=np.float32(1 - b1), b2=np.float32(b2),
                    one_minus_b2=np.float32(1 - b2), eps=np.float32(eps),
                    weight_decay=np.float32(weight_decay)))
