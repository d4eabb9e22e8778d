"""The MLP's first layer, Dense(epilogue=bias_gelu): the C++ kernel on CPU float32
(msm_jax/kernels/gelu_cpu.cc) gives the exact GELU of x @ kernel + bias and its gradients, the
parameters of nn.Dense; the formula runs wherever the kernel does not apply; and under a device
mesh each device computes its own samples."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from msm_jax.kernels import gelu as cpu_kernel
from msm_jax.models import dense
from msm_jax.models.dense import Dense, bias_gelu, gelu


def test_formula_is_the_exact_erf_gelu():
  x = jnp.linspace(-12.0, 12.0, 10_001)
  exact = lambda t: jax.nn.gelu(t, approximate=False)
  np.testing.assert_allclose(gelu(x), exact(x), atol=2e-6, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(jax.grad(gelu))(x), jax.vmap(jax.grad(exact))(x),
                             atol=2e-6, rtol=1e-6)
  assert not np.allclose(gelu(x), jax.nn.gelu(x, approximate=True), atol=1e-4)  # not tanh's


def _float64_gelu_and_derivative(x):
  x = np.asarray(x, np.float64)
  cdf = 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))
  return x * cdf, cdf + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


@pytest.mark.parametrize("shape", [
    (2, 3, 16),      # one vector per row
    (3, 50, 2048),   # the paper's encoder MLP (several column blocks per sample)
    (2, 197, 1024),  # its decoder MLP
    (5, 272),        # 2-D, a width that is not a multiple of the kernel's column block
])
def test_kernel_matches_float64(shape):
  h = jax.random.normal(jax.random.key(0), shape) * 4.0  # well into both tails
  bias = jax.random.normal(jax.random.key(1), shape[-1:])
  dy = jax.random.normal(jax.random.key(2), shape)
  assert cpu_kernel.supports(h), "the kernel could not be built here (see the log)"
  y, vjp = jax.vjp(jax.jit(cpu_kernel.gelu), h, bias)
  dh, dbias = vjp(dy)
  value, derivative = _float64_gelu_and_derivative(np.asarray(h, np.float64) + np.asarray(bias))
  np.testing.assert_allclose(y, value, atol=3e-6, rtol=1e-6)
  np.testing.assert_allclose(dh, dy * derivative, atol=3e-6, rtol=1e-6)
  rows = tuple(range(len(shape) - 1))
  np.testing.assert_allclose(dbias, (np.asarray(dy, np.float64) * derivative).sum(rows),
                             atol=1e-4, rtol=1e-5)


def test_gelu_dense_is_nn_dense_then_the_exact_gelu():
  x = jax.random.normal(jax.random.key(0), (4, 9, 48))
  cotangent = jax.random.normal(jax.random.key(1), (4, 9, 64))
  ours, flax_dense = Dense(64, epilogue=bias_gelu), nn.Dense(64)
  params = flax_dense.init(jax.random.key(2), x)["params"]
  params["bias"] = 0.5 * jax.random.normal(jax.random.key(3), (64,))
  shapes = lambda m: jax.tree.map(jnp.shape, m.init(jax.random.key(2), x))
  assert shapes(ours) == shapes(flax_dense)  # same parameters: same checkpoints
  assert dense.uses_cpu_gelu_kernel(jnp.zeros((4, 9, 64)))
  exact = lambda p, x: jax.nn.gelu(flax_dense.apply({"params": p}, x), approximate=False)
  kernel = lambda p, x: ours.apply({"params": p}, x)
  (value, grads), (r_value, r_grads) = (
      jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(f(p, x) * cotangent), (0, 1)))(params, x)
      for f in (kernel, exact))
  np.testing.assert_allclose(value, r_value, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(r_grads)):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_formula_runs_where_the_kernel_does_not(monkeypatch):
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  layer = Dense(24, epilogue=bias_gelu)  # 24: not a multiple of 16
  variables = layer.init(jax.random.key(1), x)
  assert not dense.uses_cpu_gelu_kernel(jnp.zeros((2, 5, 24)))
  want = gelu(nn.Dense(24).apply(variables, x))
  np.testing.assert_array_equal(layer.apply(variables, x), want)
  bf16 = Dense(32, epilogue=bias_gelu, dtype=jnp.bfloat16)
  assert not dense.uses_cpu_gelu_kernel(jnp.zeros((2, 32), jnp.bfloat16))
  assert bf16.apply(bf16.init(jax.random.key(1), x), x).dtype == jnp.bfloat16
  monkeypatch.setattr(jax, "devices", lambda *args: [type("Gpu", (), {"platform": "gpu"})()])
  assert not dense.uses_cpu_gelu_kernel(jnp.zeros((2, 5, 32)))


def test_an_epilogue_needs_the_bias():
  with pytest.raises(ValueError, match="use_bias=True"):
    Dense(16, epilogue=bias_gelu, use_bias=False).init(jax.random.key(0), jnp.zeros((2, 16)))


def test_kernel_splits_by_batch_across_devices():
  """Under jit over an 8-device batch mesh nothing is gathered (the bias gradient is summed by
  an all-reduce), and the result is the single-device one."""
  h = jax.random.normal(jax.random.key(0), (8, 13, 32))
  bias = jax.random.normal(jax.random.key(1), (32,))
  dy = jax.random.normal(jax.random.key(2), h.shape)
  step = lambda h, bias, dy: jax.vjp(cpu_kernel.gelu, h, bias)[1](dy)
  expected = jax.jit(step)(h, bias, dy)
  batch = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
  h_sharded, dy_sharded = (jax.device_put(a, batch) for a in (h, dy))
  compiled = jax.jit(step).lower(h_sharded, bias, dy_sharded).compile()
  assert not any(op in compiled.as_text() for op in ("all-gather", "all-to-all"))
  for got, want in zip(compiled(h_sharded, bias, dy_sharded), expected):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("h_shape,bias_shape,message", [
    ((2, 3, 16), (8,), "msm_gelu: bias must be"),
    ((6, 16), (16,), "msm_gelu: h must be"),       # not (batch, tokens, width)
    ((2, 3, 24), (24,), "msm_gelu: h must be"),    # width not a multiple of 16
])
def test_kernel_rejects_bad_shapes_by_name(h_shape, bias_shape, message):
  """Shapes `gelu` never passes, called on the FFI target directly: one clear error."""
  assert cpu_kernel.supports(jnp.zeros((1, 1, 16)))  # registers the targets
  call = jax.ffi.ffi_call("msm_gelu_forward", jax.ShapeDtypeStruct(h_shape, jnp.float32))
  with pytest.raises(Exception, match=message):
    jax.block_until_ready(call(jnp.zeros(h_shape), jnp.zeros(bias_shape)))
