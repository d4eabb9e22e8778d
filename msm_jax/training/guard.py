"""The train loop's non-finite guard: every step's loss and gradient norm are checked inside the
compiled step (training/step.py, metric NONFINITE); here the loop reads those checks, stops a
diverged run with one message, and makes sure nothing non-finite is ever checkpointed.

A call's checks are read one call late, after the next call has been dispatched, so that the
host never waits for the device just to check (on an accelerator that would idle it once per
step); `settle()` reads the latest at once, before anything is saved or logged.
"""
from typing import Optional

import jax
from absl import logging

from msm_jax.training.step import FIRST_NONFINITE, GUARD_METRICS, NONFINITE, NONFINITE_STEPS

_WHAT = {1: "the loss", 2: "the gradient norm", 3: "the loss and the gradient norm"}


class NonFiniteError(FloatingPointError):
  """The run diverged: a step's loss or gradient norm was NaN or infinite."""


class NonFiniteGuard:

  def __init__(self, skip: bool, checkpointer):
    self.skip = skip  # config.skip_nonfinite: such steps were skipped in the step; only count
    self.skipped = 0
    self._checkpointer = checkpointer
    self._pending: Optional[tuple] = None

  def watch(self, steps_before: int, metrics):
    """The call just dispatched ran steps steps_before + 1, ...; checks the call before it."""
    previous, self._pending = self._pending, (steps_before, metrics)
    if previous is not None:
      self._check(*previous)

  def settle(self):
    """Checks the latest call now: before a checkpoint, a figure or a log line."""
    if self._pending is not None:
      pending, self._pending = self._pending, None
      self._check(*pending)

  def _check(self, steps_before: int, metrics):
    guard = jax.device_get({k: metrics[k] for k in GUARD_METRICS if k in metrics})
    code = int(guard[NONFINITE])
    if not code:
      return
    step = steps_before + int(guard.get(FIRST_NONFINITE, 0)) + 1
    count = int(guard.get(NONFINITE_STEPS, 1))
    if self.skip:
      self.skipped += count
      logging.warning("Step %d: %s not finite; its update and %d more in the same call skipped "
                      "(config.skip_nonfinite; %d so far).", step, _WHAT[code], count - 1,
                      self.skipped)
      return
    last = self._checkpointer.latest_step()
    where = (f"the last good checkpoint is step {last} in {self._checkpointer.directory}, and "
             "rerunning the same command resumes from it" if last is not None
             else "no checkpoint had been written yet")
    raise NonFiniteError(
        f"Step {step}: {_WHAT[code]} went non-finite, so training stopped; nothing non-finite "
        f"was saved: {where}. Lower config.base_lr, set config.grad_clip_norm, or set "
        "config.skip_nonfinite=True to skip such updates.")
