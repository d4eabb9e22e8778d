"""Model shapes, parameter counts (without allocating), patchify and position embeddings."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.pretrain import get_config
from msm_jax.models.build import build_encoder
from msm_jax.models.patches import grid_shape, patchify, unpatchify
from msm_jax.models.posemb import sincos_2d
from msm_jax.training.pretrain import MsmTask

VARIANTS = ["tiny", "vit_s", "vit_m", "vit_l", "maskspec_tiny", "maskspec_small", "maskspec_base"]


def param_count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("variant,millions", [("vit_s", 38), ("vit_m", 85), ("vit_l", 303)])
def test_paper_encoder_parameter_counts(variant, millions):
  config = get_config(variant)
  encoder = build_encoder(config.model)
  shapes = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, 224, 224, 1)))
  assert param_count(shapes) / 1e6 == pytest.approx(millions, rel=0.01)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_preset_predicts_every_patch(variant):
  config = get_config(variant)
  task = MsmTask(config)
  params = jax.eval_shape(task.init_params, jax.random.key(0))
  images = jax.ShapeDtypeStruct((2,) + tuple(config.input_shape), jnp.float32)
  pred, target, mask = jax.eval_shape(task.predict, params, images, jax.random.key(1),
                                      jnp.arange(2))
  ph, pw = config.model.patch_size
  assert pred.shape == target.shape == (2, task.num_patches, ph * pw * config.input_shape[2])
  assert pred.dtype == jnp.float32  # loss in float32 even for bfloat16 compute
  assert mask.shape == (2, task.num_patches)


def test_encoder_handles_rectangular_inputs_patches_and_channels():
  config = get_config("tiny")
  config.model.patch_size = (4, 8)
  encoder = build_encoder(config.model)
  images = jnp.ones((2, 48, 128, 3))
  params = encoder.init(jax.random.key(0), images)
  tokens = encoder.apply(params, images)
  assert tokens.shape == (2, 1 + (48 // 4) * (128 // 8), config.model.encoder.width)
  visible = jnp.tile(jnp.arange(10)[None], (2, 1))
  assert encoder.apply(params, images, visible).shape == (2, 11, config.model.encoder.width)


def test_patchify_round_trip_and_order():
  images = jnp.arange(2 * 8 * 12 * 3, dtype=jnp.float32).reshape(2, 8, 12, 3)
  patches = patchify(images, (4, 6))
  assert patches.shape == (2, 4, 4 * 6 * 3)
  # Patch 1 is the top row's second patch (row-major grid), laid out (ph, pw, C).
  np.testing.assert_array_equal(patches[0, 1], images[0, :4, 6:12].reshape(-1))
  np.testing.assert_array_equal(unpatchify(patches, (4, 6), (2, 2), 3), images)


def test_patch_must_divide_input():
  with pytest.raises(ValueError, match="not divisible by patch 16x16"):
    grid_shape((100, 224), (16, 16))


def test_sincos_embedding_is_distinct_per_position_and_bounded():
  emb = sincos_2d((3, 5), 16)
  assert emb.shape == (15, 16)
  assert np.abs(emb).max() <= 1.0
  assert len({tuple(np.round(r, 6)) for r in emb}) == 15
  # Same row -> identical row half; same column -> identical column half.
  np.testing.assert_allclose(emb[0, :8], emb[4, :8])
  np.testing.assert_allclose(emb[0, 8:], emb[5, 8:])


def test_bfloat16_compute_keeps_float32_params():
  config = get_config("tiny")
  config.model.dtype = "bfloat16"
  task = MsmTask(config)
  params = task.init_params(jax.random.key(0))
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  images = jnp.ones((2,) + tuple(config.input_shape))
  pred, _, _ = task.predict(params, images, jax.random.key(0), jnp.arange(2))
  assert pred.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(pred)))


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_attention_matches_textbook_softmax_attention(dtype, tol):
  from msm_jax.models.vit import Attention
  x = jax.random.normal(jax.random.key(0), (2, 7, 16))
  attn = Attention(num_heads=4, dtype=dtype)
  params = attn.init(jax.random.key(1), x)["params"]
  qkv = x @ params["qkv"]["kernel"] + params["qkv"]["bias"]
  q, k, v = (t.reshape(2, 7, 4, 4) for t in jnp.split(qkv, 3, axis=-1))
  probs = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0, axis=-1)
  heads = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(2, 7, 16)
  expected = heads @ params["out"]["kernel"] + params["out"]["bias"]
  got = attn.apply({"params": params}, x)
  assert got.dtype == dtype
  np.testing.assert_allclose(np.asarray(got, np.float32), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-5), (jnp.bfloat16, 5e-2)])
def test_attention_gradients_match_autodiff_of_the_textbook_formula(dtype, tol):
  """The hand-written backward pass (models/attention.py) against jax.grad of softmax(qk^T)v,
  with N not a multiple of anything and a cotangent that is not all ones."""
  from msm_jax.models.attention import softmax_attention
  q, k, v, cotangent = (jax.random.normal(key, (2, 3, 11, 8)) for key in
                        jax.random.split(jax.random.key(0), 4))
  textbook = lambda q, k, v: jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2), axis=-1) @ v
  loss = lambda fn: lambda *qkv: jnp.sum(fn(*qkv).astype(jnp.float32) * cotangent)
  expected = jax.grad(loss(textbook), argnums=(0, 1, 2))(q, k, v)
  cast = [x.astype(dtype) for x in (q, k, v)]
  got = jax.jit(jax.grad(loss(softmax_attention), argnums=(0, 1, 2)))(*cast)
  for g, e in zip(got, expected):
    assert g.dtype == dtype
    np.testing.assert_allclose(np.asarray(g, np.float32), e, atol=tol, rtol=tol)
  np.testing.assert_allclose(np.asarray(softmax_attention(*cast), np.float32), textbook(q, k, v),
                             atol=tol, rtol=tol)


def _assert_same_values_and_grads(fn, reference, q, k, v, cotangent, tol):
  def values_and_grads(f):
    loss = lambda *qkv: jnp.sum(f(*qkv).astype(jnp.float32) * cotangent)
    return jax.tree.leaves(jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v))
  for got, expected in zip(values_and_grads(fn), values_and_grads(reference), strict=True):
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(expected, np.float32),
                               atol=tol, rtol=tol)


@pytest.mark.parametrize("tokens", [10, 11])  # 11: padded to 12, the pad masked by length
def test_fused_attention_matches_the_formula(tokens):
  """The flash-attention path (jax.nn.dot_product_attention, here its XLA implementation, which
  runs on CPU) against softmax_attention, values and gradients, odd token counts included."""
  from msm_jax.models.attention import fused_attention, softmax_attention
  q, k, v, cotangent = (jax.random.normal(key, (2, 3, tokens, 8)) for key in
                        jax.random.split(jax.random.key(0), 4))
  fused = lambda *qkv: fused_attention(*qkv, implementation="xla")
  assert fused(q, k, v).shape == (2, 3, tokens, 8)
  _assert_same_values_and_grads(fused, softmax_attention, q, k, v, cotangent, tol=2e-5)


def _kernel_on_heads_major(q, k, v):
  """The C++ kernel (which takes the fused (B, N, 3, H, D) projection before its bias and scales
  q itself) as a function of heads-major q (already scaled), k, v, like softmax_attention: a
  random bias is taken off the projection for the kernel to add back."""
  from msm_jax.kernels.attention import self_attention
  q = q * q.shape[-1]**0.5
  qkv = jnp.stack([jnp.swapaxes(x, 1, 2) for x in (q, k, v)], axis=2)
  bias = jax.random.normal(jax.random.key(7), qkv.shape[2:])
  return jnp.swapaxes(self_attention(qkv - bias, bias), 1, 2)


@pytest.mark.parametrize("shape,scale,tol", [
    ((2, 3, 11, 16), 1.0, 2e-5),   # fewer tokens than one vector, not a multiple of the row block
    ((1, 2, 197, 16), 3.0, 2e-5),  # the paper's decoder heads, peaked softmax
    ((2, 2, 50, 64), 1.0, 2e-5),   # the paper's encoder heads
    ((3, 1, 16, 48), 1.0, 2e-5),   # tokens exactly one vector
    # A block of two vectors; logits far below the maximum (exp -> 0). Gradients up to ~60:
    # float32 rounding in either computation reaches 1e-4 (each is within 2e-4 of float64).
    ((1, 2, 70, 16), 30.0, 3e-4),
    ((1, 2, 1, 32), 1.0, 2e-5),    # a single token
])
def test_cpu_kernel_matches_the_formula(shape, scale, tol):
  """The fused C++ kernel (msm_jax/kernels) against softmax_attention, values and gradients."""
  from msm_jax.kernels.attention import supports
  from msm_jax.models.attention import softmax_attention
  q, k, v, cotangent = (jax.random.normal(key, shape) for key in
                        jax.random.split(jax.random.key(0), 4))
  q = q * scale * shape[-1]**-0.5
  assert supports(q), "the kernel could not be built here (see the log)"
  assert _kernel_on_heads_major(q, k, v).shape == shape
  _assert_same_values_and_grads(_kernel_on_heads_major, softmax_attention, q, k, v, cotangent,
                                tol=tol)


def test_cpu_kernel_adds_the_bias_and_returns_its_gradient(monkeypatch):
  """self_attention(qkv, bias) by the kernel and by the formula on qkv + bias: same values and
  gradients, the bias's summed over batch and tokens."""
  from msm_jax.models import attention as model_attention
  qkv, cotangent = (jax.random.normal(key, shape) for key, shape in zip(
      jax.random.split(jax.random.key(2)), [(3, 21, 3, 2, 16), (3, 21, 2, 16)]))
  bias = jax.random.normal(jax.random.key(3), (3, 2, 16))
  loss = lambda qkv, bias: jnp.sum(model_attention.self_attention(qkv, bias) * cotangent)
  assert model_attention.uses_cpu_kernel(qkv)
  value, (d_qkv, d_bias) = jax.jit(jax.value_and_grad(loss, (0, 1)))(qkv, bias)
  monkeypatch.setattr(model_attention, "uses_cpu_kernel", lambda qkv: False)
  r_value, (r_d_qkv, r_d_bias) = jax.value_and_grad(loss, (0, 1))(qkv, bias)  # the formula
  np.testing.assert_allclose(value, r_value, rtol=1e-5)
  np.testing.assert_allclose(d_qkv, r_d_qkv, atol=2e-5)
  np.testing.assert_allclose(d_bias, r_d_bias, atol=1e-4)
  np.testing.assert_allclose(d_bias, d_qkv.sum((0, 1)), atol=1e-5)


def test_cpu_kernel_splits_by_batch_and_head_across_devices():
  """Under jit over a 4 x 2 (batch, head) mesh each device runs the kernel on its own slices
  (nothing gathered), under pmap on its shard; both agree with one device."""
  from msm_jax.kernels.attention import self_attention
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  qkv, cotangent = (jax.random.normal(key, shape) for key, shape in zip(
      jax.random.split(jax.random.key(1)), [(8, 19, 3, 2, 16), (8, 19, 2, 16)]))
  bias = jax.random.normal(jax.random.key(2), (3, 2, 16))
  step = jax.value_and_grad(lambda qkv, bias, c: jnp.sum(self_attention(qkv, bias) * c), (0, 1))
  expected = jax.jit(step)(qkv, bias, cotangent)
  mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
  shard = lambda x, *spec: jax.device_put(x, NamedSharding(mesh, PartitionSpec(*spec)))
  sharded = (shard(qkv, "data", None, None, "model"), shard(bias, None, "model"),
             shard(cotangent, "data", None, "model"))
  compiled = jax.jit(step).lower(*sharded).compile()
  assert not any(op in compiled.as_text() for op in ("all-gather", "all-to-all"))
  per_shard = jax.pmap(step, in_axes=(0, None, 0))(qkv[:, None], bias, cotangent[:, None])
  for loss, (d_qkv, d_bias) in (compiled(*sharded), per_shard):
    np.testing.assert_allclose(float(jnp.sum(loss)), float(expected[0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(d_qkv).reshape(qkv.shape), expected[1][0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(d_bias).reshape(-1, *bias.shape).sum(0),
                               expected[1][1], atol=1e-5)


class _FakeDevice:

  def __init__(self, platform, compute_capability=None):
    self.platform = platform
    if compute_capability:
      self.compute_capability = compute_capability


@pytest.mark.parametrize("capability,dtype,head_dim,expected", [
    ("9.0", jnp.bfloat16, 16, True), ("8.0", jnp.float16, 64, True),
    ("9.0", jnp.float32, 16, False), ("9.0", jnp.bfloat16, 12, False),
    ("9.0", jnp.bfloat16, 256, False), ("7.0", jnp.bfloat16, 64, False)])
def test_cudnn_attention_is_chosen_only_where_it_runs(monkeypatch, capability, dtype, head_dim,
                                                      expected):
  from msm_jax.models import attention
  q = jnp.zeros((1, 2, 5, head_dim), dtype)
  monkeypatch.setattr(jax, "devices", lambda *args: [_FakeDevice("cpu")])
  assert not attention.uses_cudnn(q)
  monkeypatch.setattr(jax, "devices", lambda *args: [_FakeDevice("gpu", capability)])
  assert attention.uses_cudnn(q) == expected


@pytest.mark.parametrize("platform,dtype,head_dim,expected", [
    ("cpu", jnp.float32, 16, True), ("cpu", jnp.float32, 64, True),
    ("cpu", jnp.bfloat16, 16, False), ("cpu", jnp.float32, 24, False),
    ("gpu", jnp.float32, 16, False)])
def test_cpu_kernel_is_chosen_only_where_it_runs(monkeypatch, platform, dtype, head_dim, expected):
  from msm_jax.models import attention
  monkeypatch.setattr(jax, "devices", lambda *args: [_FakeDevice(platform)])
  assert attention.uses_cpu_kernel(jnp.zeros((1, 5, 3, 2, head_dim), dtype)) == expected


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("tokens,head_dim", [(50, 64), (197, 16)])  # the ViT-S MSM shapes
def test_cudnn_attention_matches_the_formula_on_gpu(tokens, head_dim):
  from msm_jax.models.attention import attention, softmax_attention, uses_cudnn
  q, k, v, cotangent = (jax.random.normal(key, (4, 8, tokens, head_dim)) for key in
                        jax.random.split(jax.random.key(0), 4))
  q = q * head_dim**-0.5
  q, k, v = (x.astype(jnp.bfloat16) for x in (q, k, v))
  assert uses_cudnn(q)
  _assert_same_values_and_grads(attention, softmax_attention, q, k, v, cotangent, tol=5e-2)


@pytest.mark.parametrize("shape", [(512, 2048), (35, 100), (16, 16), (3, 5), (1, 40)])
def test_transpose_kernel_is_the_transpose(shape):
  """Whole 16 x 16 tiles, partial ones at the edges, and matrices smaller than a tile."""
  from msm_jax.kernels import transpose as transpose_kernel
  x = jax.random.normal(jax.random.key(0), shape)
  if not transpose_kernel.supports(x):
    pytest.skip("the C++ kernel cannot be built here")
  np.testing.assert_array_equal(jax.jit(transpose_kernel.transpose)(x), np.asarray(x).T)


def test_dense_wider_in_than_out_transposes_its_kernel_gradient_with_the_kernel():
  from msm_jax.kernels import transpose as transpose_kernel
  from msm_jax.models.dense import Dense
  x = jnp.ones((2, 3, 40))
  if not transpose_kernel.supports(x[0]):
    pytest.skip("the C++ kernel cannot be built here")
  layer = Dense(8)
  params = layer.init(jax.random.key(0), x)["params"]
  grad = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x) ** 2)))
  assert "msm_transpose" in grad.lower(params).as_text()


@pytest.mark.parametrize("features_in,features_out", [(6, 20), (20, 6), (100, 35)])  # both
# transposes; (100, 35): the kernel gradient (35, 100) transposed by whole and partial tiles
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_dense_matches_flax_dense_values_and_gradients(features_in, features_out, dtype, tol):
  from msm_jax.models.dense import Dense
  x = jax.random.normal(jax.random.key(0), (3, 5, features_in))
  cotangent = jax.random.normal(jax.random.key(1), (3, 5, features_out))
  ours, flax_dense = Dense(features_out, dtype=dtype), nn.Dense(features_out, dtype=dtype)
  params = flax_dense.init(jax.random.key(2), x)["params"]
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)["params"]) == jax.tree.map(
      jnp.shape, params)

  def loss(module):
    return lambda p, x: jnp.sum(module.apply({"params": p}, x).astype(jnp.float32) * cotangent)
  expected = jax.grad(loss(flax_dense), argnums=(0, 1))(params, x)
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert g.dtype == e.dtype
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(e, np.float32),
                               atol=tol, rtol=tol)
