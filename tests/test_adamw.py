"""The project's AdamW (training/optimizer.py): optax.adamw's values (clipping included), by its
XLA form everywhere and by its fused form on CPU (msm_jax/kernels/adamw_cpu.cc), which updates the
parameters in place in the compiled step; XLA's form wherever the kernel does not run."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from configs.pretrain import get_config
from msm_jax import cpu_kernels
from msm_jax.kernels import adamw as adamw_kernel
from msm_jax.training import loop
from msm_jax.training.optimizer import decay_mask, make_optimizer
from msm_jax.training.pretrain import MsmTask
from msm_jax.training.step import make_train_step

LR = 1e-2


def schedule(count):
  return LR * (count + 1) / 4  # changes every step: each form must get this step's value


def params_and_grads(seed=0):
  """Leaves with and without weight decay, of sizes with a scalar tail (not a multiple of 16)
  and spanning several of the kernel's tasks (16384 floats each)."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
  params = {"dense": {"kernel": normal(37, 53), "bias": normal(53)},
            "norm": {"scale": normal(40_001)}, "head": {"kernel": normal(16, 16)}}
  steps = [jax.tree.map(lambda x: normal(*x.shape) * 10.0 ** rng.integers(-5, 1), params)
           for _ in range(4)]
  return params, steps


def optax_reference(config):
  tx = optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=1e-8,
                   weight_decay=config.weight_decay, mask=decay_mask)
  if config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("clip_norm", [0.0, 1.0])
def test_update_matches_optax_adamw(clip_norm, fused):
  if fused and not adamw_kernel.supports(params_and_grads()[0]):
    pytest.skip("the C++ kernel cannot be built here")
  config = get_config("tiny")
  config.grad_clip_norm = clip_norm
  tx, ref_tx = make_optimizer(config, schedule), optax_reference(config)
  params, grads_per_step = params_and_grads()
  if clip_norm:  # clipping must actually trigger
    assert float(optax.tree.norm(grads_per_step[0])) > 10 * clip_norm

  def ours(params, grads, state):
    if fused:
      return tx.hyper.apply_fused(params, grads, state)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  ours_params, state = params, tx.init(params)
  ref_params, ref_state = params, ref_tx.init(params)
  for grads in grads_per_step:
    ours_params, state = jax.jit(ours)(ours_params, grads, state)
    updates, ref_state = jax.jit(ref_tx.update)(grads, ref_state, ref_params)
    ref_params = optax.apply_updates(ref_params, updates)
  ref_adam = (ref_state[1] if clip_norm else ref_state)[0]  # optax's ScaleByAdamState
  assert int(state.count) == int(ref_adam.count) == 4
  # To a few ulp of each array's scale: multiplying by 1/x is not always dividing by x (the
  # clipping factor, the bias corrections), and sums of terms of both signs cancel.
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6,
                                                  atol=1e-6 * float(np.max(np.abs(b))))
  jax.tree.map(close, (state.mu, state.nu), (ref_adam.mu, ref_adam.nu))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=5e-7 * LR),
               ours_params, ref_params)  # ulp(0.01) ~ 1e-7 x LR
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), ours_params, params)
  assert min(jax.tree.leaves(moved)) > 0.1 * LR


def test_moments_never_share_a_buffer():
  """The fused update writes mu and nu in place: one array for both would be written twice
  (a crash under donation, seen with 8 devices)."""
  state = make_optimizer(get_config("tiny"), schedule).init(params_and_grads()[0])
  for mu, nu in zip(jax.tree.leaves(state.mu), jax.tree.leaves(state.nu)):
    assert mu.unsafe_buffer_pointer() != nu.unsafe_buffer_pointer()


def _tiny_task_and_batch():
  config = get_config("tiny")
  config.input_shape = (32, 32, 1)
  config.warmup_steps, config.total_steps = 2, 10
  task = MsmTask(config)
  images = np.random.default_rng(0).standard_normal((4, 32, 32, 1), dtype=np.float32)
  return config, task, {"image": jnp.asarray(images)}


def test_train_step_updates_parameters_in_place_with_the_kernel():
  """On CPU the step's update is one kernel call per parameter, and XLA keeps no copy of any
  parameter (a copy would cost a pass over the parameters' memory per step)."""
  config, task, batch = _tiny_task_and_batch()
  tx = make_optimizer(config, lambda count: 1e-3)
  state = loop.create_train_state(task, tx, jax.random.key(0))
  if not adamw_kernel.supports(state.params):
    pytest.skip("the C++ kernel cannot be built here")
  step = jax.jit(make_train_step(task.loss_fn, lambda count: 1e-3), donate_argnums=0)
  text = step.lower(state, batch, jax.random.key(1)).compile().as_text()
  assert len(re.findall(r'custom_call_target="msm_adamw_update"', text)) == len(
      jax.tree.leaves(state.params))
  parameter_shapes = {f"f32[{','.join(map(str, x.shape))}]"
                      for x in jax.tree.leaves(state.params) if x.ndim == 2}
  copies = [line for line in text.splitlines()  # (not ROOT: a fusion's body, e.g. a transpose)
            if (match := re.match(r"\s*%\S+ = (f32\[[\d,]+\])\S* copy\(", line))
            and match.group(1) in parameter_shapes]
  assert not copies, copies[:3]


def test_train_step_agrees_with_flax_and_optax():
  """A step of the MSM task with loop.TrainState (the kernel on CPU) and with flax's own
  TrainState (the optimizer's XLA form): the same parameters and optimizer state. One step: after it,
  gradients that are rounding noise (the key bias's, zero in exact arithmetic) differ between
  the two, and Adam scales noise up to full-size steps."""
  config, task, batch = _tiny_task_and_batch()
  lr = lambda count: 1e-3 * (count + 1)
  tx = make_optimizer(config, lr)
  step = jax.jit(make_train_step(task.loss_fn, lr))
  states = []
  for state_class in (loop.TrainState, train_state.TrainState):
    state = state_class.create(apply_fn=None, params=task.init_params(jax.random.key(0)), tx=tx)
    states.append(step(state, batch, jax.random.key(1))[0])
  fused, ref = states
  assert int(fused.step) == int(ref.step) == 1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9),
               (fused.params, fused.opt_state), (ref.params, ref.opt_state))


class _FakeDevice:
  platform = "gpu"


def test_kernel_is_chosen_only_on_cpu_for_float32(monkeypatch):
  params = params_and_grads()[0]
  if not adamw_kernel.supports(params):
    pytest.skip("the C++ kernel cannot be built here")
  assert not adamw_kernel.supports({**params, "half": jnp.ones(3, jnp.bfloat16)})
  monkeypatch.setattr(jax, "devices", lambda *args: [_FakeDevice()])
  assert not adamw_kernel.supports(params)


def test_xla_updates_with_the_cpu_kernels_switched_off():
  config, task, batch = _tiny_task_and_batch()
  tx = make_optimizer(config, lambda count: 1e-3)
  state = loop.create_train_state(task, tx, jax.random.key(0))
  step = jax.jit(make_train_step(task.loss_fn, lambda count: 1e-3))
  with cpu_kernels.switched(False):
    assert "msm_adamw_update" not in step.lower(state, batch, jax.random.key(1)).as_text()
    new_state, _ = step(state, batch, jax.random.key(1))
  assert int(new_state.step) == 1
  assert jax.tree.structure(new_state.opt_state) == jax.tree.structure(state.opt_state)
