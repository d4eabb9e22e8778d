"""The non-finite guard: a NaN step stops the run with one message naming the step and the real
last good checkpoint, nothing non-finite is ever saved, and config.skip_nonfinite skips it."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from configs.pretrain import get_config
from msm_jax.checkpoint.manager import restore_encoder
from msm_jax.data.source import make_source
from msm_jax.training.guard import NonFiniteError
from msm_jax.training.loop import train
from msm_jax.training.pretrain import MsmTask
from msm_jax.training.step import make_multi_step, make_train_step

BAD_STEP = 6


class NanBatchAt:
  """A source, with every pixel of step `bad_step`'s batch NaN."""

  def __init__(self, source, bad_step):
    self.source, self.bad_step = source, bad_step

  def batches(self, *, start_step, **kwargs):
    for step, batch in enumerate(self.source.batches(start_step=start_step, **kwargs),
                                 start=start_step + 1):
      nan = np.full_like(batch["image"], np.nan)
      yield dict(batch, image=nan) if step == self.bad_step else batch


def run(workdir, steps_per_call, skip=False, bad_step=BAD_STEP):
  config = get_config("tiny")
  config.input_shape = (32, 32, 1)
  config.batch_size, config.total_steps, config.warmup_steps = 8, 12, 2
  config.log_every = config.checkpoint_every = 4
  config.figure_every = 0
  config.steps_per_call, config.skip_nonfinite = steps_per_call, skip
  source = NanBatchAt(make_source(config.data, config.input_shape, config.seed), bad_step)
  return train(config, str(workdir), MsmTask(config), source=source)


def all_finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_a_nan_step_stops_the_run_naming_it_and_the_last_good_checkpoint(tmp_path,
                                                                          steps_per_call):
  with pytest.raises(NonFiniteError) as error:
    run(tmp_path, steps_per_call)
  message = str(error.value)
  assert message.startswith(f"Step {BAD_STEP}: the loss and the gradient norm went non-finite")
  assert f"the last good checkpoint is step 4 in {tmp_path}" in message
  assert "config.skip_nonfinite=True" in message
  encoder, _ = restore_encoder(str(tmp_path))  # the latest checkpoint: step 4, finite
  assert all_finite(encoder)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4"]


def test_before_any_checkpoint_it_says_there_is_none(tmp_path):
  with pytest.raises(NonFiniteError, match="Step 2: .*no checkpoint had been written yet"):
    run(tmp_path, 1, bad_step=2)
  assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_skip_nonfinite_skips_the_update_and_counts_it(tmp_path):
  state = run(tmp_path, 4, skip=True)
  assert int(state.step) == 12 and all_finite(state.params)
  status = json.loads((tmp_path / "status.json").read_text())
  assert status["finished"] and status["skipped_steps"] == 1
  logged = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged] == [4, 8, 12]
  assert "nonfinite" not in logged[0]  # the guard's metrics are not logged


def _toy_steps(skip):
  """A 3-parameter task: x = NaN makes the loss NaN, x = 0 only the gradient (sqrt at 0)."""
  loss_fn = lambda p, batch, rng, ids: (jnp.sum(jnp.sqrt(jnp.abs(p["w"] * batch["x"]))), {})
  state = train_state.TrainState.create(apply_fn=None, params={"w": jnp.ones(3)},
                                        tx=optax.sgd(0.1))
  step = make_train_step(loss_fn, lambda count: 0.1, skip_nonfinite=skip)
  return state, step


def test_the_step_reports_what_went_non_finite_and_skips_only_if_asked():
  state, step = _toy_steps(skip=False)
  good, nan = {"x": jnp.ones((2, 3))}, {"x": jnp.full((2, 3), jnp.nan)}
  assert int(step(state, good, jax.random.key(0))[1]["nonfinite"]) == 0
  assert int(step(state, nan, jax.random.key(0))[1]["nonfinite"]) == 3  # loss and gradients
  _, metrics = step(state, {"x": jnp.zeros((2, 3))}, jax.random.key(0))
  assert int(metrics["nonfinite"]) == 2 and float(metrics["loss"]) == 0.0  # gradients only
  new, _ = step(state, nan, jax.random.key(0))
  assert not all_finite(new.params)
  state, skipping = _toy_steps(skip=True)
  new, _ = skipping(state, nan, jax.random.key(0))
  assert int(new.step) == 1 and np.array_equal(new.params["w"], state.params["w"])
  moved, _ = skipping(state, good, jax.random.key(0))
  assert not np.array_equal(moved.params["w"], state.params["w"])


def test_several_steps_per_call_report_the_first_bad_step_and_the_count():
  state, step = _toy_steps(skip=True)
  xs = np.ones((4, 2, 3), np.float32)
  xs[1], xs[3] = np.nan, np.nan
  _, metrics = jax.jit(make_multi_step(step))(state, {"x": jnp.asarray(xs)}, jax.random.key(0))
  assert (int(metrics["nonfinite"]), int(metrics["first_nonfinite"]),
          int(metrics["nonfinite_steps"])) == (3, 1, 2)
  assert np.isnan(float(metrics["loss"]))  # the other metrics are the last step's
