"""msm_jax's LayerNorm: the C++ kernel on CPU float32 (msm_jax/kernels/layer_norm_cpu.cc) gives
flax's nn.LayerNorm's parameters, values and gradients; flax's own computation runs wherever the
kernel does not apply; and under a device mesh each device normalises its own samples."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from msm_jax.kernels import layer_norm as cpu_kernel
from msm_jax.models.norm import LayerNorm


def _inputs(shape, offset=0.0):
  x = jax.random.normal(jax.random.key(0), shape) * 3.0 + offset
  cotangent = jax.random.normal(jax.random.key(1), shape)
  width = shape[-1]
  params = {"scale": 1.0 + 0.1 * jax.random.normal(jax.random.key(2), (width,)),
            "bias": 0.1 * jax.random.normal(jax.random.key(3), (width,))}
  return x, cotangent, params


def _values_and_grads(module, params, x, cotangent):
  loss = lambda p, x: jnp.sum(module.apply({"params": p}, x).astype(jnp.float32) * cotangent)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)


def _float64_reference(params, x, cotangent, eps):
  """Values and gradients in float64 numpy, the gradient by the closed form."""
  x, g, scale = (np.asarray(a, np.float64) for a in (x, cotangent, params["scale"]))
  rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
  xhat = (x - x.mean(-1, keepdims=True)) * rstd
  y = xhat * scale + np.asarray(params["bias"], np.float64)
  gs = g * scale
  dx = rstd * (gs - gs.mean(-1, keepdims=True) - xhat * (gs * xhat).mean(-1, keepdims=True))
  rows = tuple(range(x.ndim - 1))
  return (y * g).sum(), {"scale": (g * xhat).sum(rows), "bias": g.sum(rows)}, dx


@pytest.mark.parametrize("shape", [
    (2, 11, 16),   # one vector per row, odd token count
    (3, 50, 512),  # the paper's encoder
    (2, 197, 256),  # the paper's decoder
    (5, 384),      # a 2-D input: a head's pooled feature
])
def test_kernel_matches_flax_and_float64(shape):
  x, cotangent, params = _inputs(shape)
  assert cpu_kernel.supports(x), "the kernel could not be built here (see the log)"
  ours, flax_norm = LayerNorm(epsilon=1e-6), nn.LayerNorm(epsilon=1e-6)
  assert ours._uses_cpu_kernel(x)
  init = lambda m: jax.tree.map(jnp.shape, m.init(jax.random.key(0), x))
  assert init(ours) == init(flax_norm)  # same parameter names and shapes: same checkpoints
  (value, (dparams, dx)), (f_value, (f_dparams, f_dx)) = (
      _values_and_grads(m, params, x, cotangent) for m in (ours, flax_norm))
  np.testing.assert_allclose(value, f_value, rtol=1e-5)
  np.testing.assert_allclose(dx, f_dx, atol=2e-5, rtol=1e-4)
  for name in ("scale", "bias"):
    np.testing.assert_allclose(dparams[name], f_dparams[name], atol=1e-3, rtol=1e-4)
  r_value, r_dparams, r_dx = _float64_reference(params, x, cotangent, 1e-6)
  np.testing.assert_allclose(value, r_value, rtol=1e-5)
  np.testing.assert_allclose(dx, r_dx, atol=2e-5, rtol=1e-4)
  np.testing.assert_allclose(dparams["scale"], r_dparams["scale"], atol=1e-3, rtol=1e-4)


def test_kernel_is_accurate_for_rows_with_a_large_mean():
  """The variance from centred values: no cancellation when |mean| >> std."""
  x, cotangent, params = _inputs((2, 7, 64), offset=1000.0)
  value, (_, dx) = _values_and_grads(LayerNorm(epsilon=1e-6), params, x, cotangent)
  r_value, _, r_dx = _float64_reference(params, x, cotangent, 1e-6)
  np.testing.assert_allclose(value, r_value, rtol=1e-4)
  np.testing.assert_allclose(dx, r_dx, atol=1e-4, rtol=1e-3)


class _FakeDevice:

  def __init__(self, platform):
    self.platform = platform


@pytest.mark.parametrize("platform,dtype,width,options,expected", [
    ("cpu", jnp.float32, 64, {}, True),
    ("cpu", jnp.bfloat16, 64, {}, False),  # bfloat16 input
    ("cpu", jnp.float32, 24, {}, False),   # not a multiple of the vector width
    ("cpu", jnp.float32, 64, {"use_bias": False}, False),
    ("cpu", jnp.float32, 64, {"dtype": jnp.bfloat16}, False),
    ("cpu", jnp.float32, 64, {"reduction_axes": (-2, -1)}, False),
    ("gpu", jnp.float32, 64, {}, False)])
def test_kernel_is_chosen_only_where_it_applies(monkeypatch, platform, dtype, width, options,
                                                expected):
  monkeypatch.setattr(jax, "devices", lambda *args: [_FakeDevice(platform)])
  x = jnp.zeros((2, 3, width), dtype)
  assert LayerNorm(**options)._uses_cpu_kernel(x) == expected


def test_flax_computation_runs_where_the_kernel_does_not():
  x = jax.random.normal(jax.random.key(0), (2, 5, 24))  # 24: not a multiple of 16
  for options in ({}, {"dtype": jnp.bfloat16}):
    ours, flax_norm = LayerNorm(**options), nn.LayerNorm(**options)
    variables = flax_norm.init(jax.random.key(1), x)
    np.testing.assert_array_equal(ours.apply(variables, x), flax_norm.apply(variables, x))


def test_kernel_splits_by_batch_across_devices():
  """Under jit over an 8-device batch mesh nothing is gathered (the scale and bias gradients are
  summed by an all-reduce); pmap and jit agree with one device."""
  x, cotangent, params = _inputs((8, 13, 32))
  norm = LayerNorm()
  step = lambda p, x, c: _values_and_grads(norm, p, x, c)
  expected = step(params, x, cotangent)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  batch = NamedSharding(mesh, PartitionSpec("data"))
  sharded = x, cotangent = tuple(jax.device_put(a, batch) for a in (x, cotangent))
  compiled = jax.jit(step).lower(params, *sharded).compile()
  assert not any(op in compiled.as_text() for op in ("all-gather", "all-to-all"))
  got = compiled(params, *sharded)
  per_device = jax.pmap(step, in_axes=(None, 0, 0))(params, x[:, None], cotangent[:, None])
  for leaf, want in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(leaf, want, atol=1e-5, rtol=1e-5)
  (values, (dparams, dx)) = per_device
  np.testing.assert_allclose(values.sum(), expected[0], atol=1e-4)  # a sum of +-10s
  np.testing.assert_allclose(dx.reshape(x.shape), expected[1][1], atol=1e-5)
  np.testing.assert_allclose(dparams["scale"].sum(0), expected[1][0]["scale"], atol=1e-4)
