"""On 8 simulated CPU devices, the jit-sharded, pmap and single-device steps agree."""
import jax
import numpy as np
import pytest

from configs.pretrain import get_config
from msm_jax.data.synthetic import SyntheticSource
from msm_jax.training.optimizer import learning_rate_schedule
from msm_jax.training.parallel import Parallel
from msm_jax.training.pretrain import MsmTask
from msm_jax.training.step import make_train_step
from test_train_step import make_state

STEPS = 3


def config_for(mode, accum=1):
  config = get_config("tiny")
  config.input_shape = (32, 32, 1)
  config.batch_size = 16
  config.parallel = mode
  config.grad_accum_steps = accum
  config.warmup_steps = 1
  return config


def batches(config):
  source = SyntheticSource(tuple(config.input_shape), seed=0, prefetch=0)
  stream = source.batches(global_batch_size=config.batch_size, start_step=0)
  return [next(stream) for _ in range(STEPS)]


def run(mode, accum=1, steps_per_call=1):
  config = config_for("jit" if mode == "single" else mode, accum)
  task = MsmTask(config)
  schedule = learning_rate_schedule(config)
  state = make_state(config, task)
  losses = []
  if mode == "single":
    step = jax.jit(make_train_step(task.loss_fn, schedule, grad_accum_steps=accum))
    for batch in batches(config):
      state, metrics = step(state, jax.device_put(batch, jax.devices()[0]), jax.random.key(0))
      losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params)
  parallel = Parallel(mode, steps_per_call)
  state = parallel.place_state(state)
  step = parallel.compile_step(task.loss_fn, schedule, accum)
  stream = iter(batches(config))
  for _ in range(STEPS // steps_per_call):
    calls = [next(stream) for _ in range(steps_per_call)]
    state, metrics = step(state, parallel.place_batch(calls), jax.random.key(0))
    losses += [None] * (steps_per_call - 1) + [float(metrics["loss"])]
  return losses, jax.device_get(parallel.host_state(state).params)


@pytest.fixture(scope="module")
def single():
  return run("single")


@pytest.mark.parametrize("mode,accum,steps_per_call",
                         [("jit", 1, 1), ("pmap", 1, 1), ("jit", 2, 1), ("jit", 1, 3),
                          ("pmap", 1, 3)])
def test_parallel_step_matches_single_device(single, mode, accum, steps_per_call):
  assert jax.device_count() == 8
  losses, params = run(mode, accum, steps_per_call)
  ref_losses, ref_params = single
  assert len(set(ref_losses)) == STEPS  # the steps really differ
  # A call of several steps reports its last step's metrics.
  reported = [i for i, loss in enumerate(losses) if loss is not None]
  np.testing.assert_allclose([losses[i] for i in reported], [ref_losses[i] for i in reported],
                             rtol=1e-5)
  # Adam turns float-rounding-sized gradients into updates of a few % of lr (6e-5 here), so
  # parameters agree to well under one update, not bitwise.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               params, ref_params)


def test_parallel_rejects_unknown_mode():
  with pytest.raises(ValueError, match="config.parallel"):
    Parallel("dp")
