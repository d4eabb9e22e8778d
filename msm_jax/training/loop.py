"""The one train loop: data -> compiled step -> logging, figures, checkpoints, resume.

Pretraining and finetuning differ only in the `Task` they hand to `train`.
"""
import functools
import json
import os
import signal

import jax
import numpy as np
from absl import logging
from flax.training import train_state

from msm_jax.checkpoint.best import BestCheckpoint
from msm_jax.checkpoint.manager import Checkpointer
from msm_jax.data.source import make_source
from msm_jax.metrics.logger import TrainLogger
from msm_jax.training.guard import NonFiniteGuard
from msm_jax.training.optimizer import learning_rate_schedule, make_optimizer
from msm_jax.training.parallel import Parallel, resolve_steps_per_call
from msm_jax.training.step import GUARD_METRICS
from msm_jax.training.validate import validate_config


class Task:
  """What a job supplies: parameters, a loss, what to export, and optionally a figure."""

  def init_params(self, rng):
    raise NotImplementedError

  def loss_fn(self, params, batch, rng, sample_ids):
    """-> (scalar loss, dict of scalar metrics); pure, traced inside the compiled step."""
    raise NotImplementedError

  def export(self, params):
    """-> (encoder params, JSON model description) saved beside the full state."""
    raise NotImplementedError

  def make_optimizer(self, config, schedule):
    return make_optimizer(config, schedule)

  def pretrained_params(self, params):
    """Fresh runs only: host params (freshly initialised) -> params to start from, or None to
    keep them (finetuning loads a pretraining checkpoint here)."""
    return None

  def save_figure(self, params, images, step: int, workdir: str):
    return None

  # The validate() metric whose highest value is worth keeping: with config.keep_best, the
  # params that reached it are saved in WORKDIR/best (None: the task has no such metric).
  best_metric = None

  def validate(self, params) -> dict:
    """Host params -> scalar metrics on held-out data, logged with a 'val_' prefix every
    config.eval_every steps; {} when the task has none. Runs on every process (a multi-host
    run must agree on the best checkpoint), so it must not use collectives."""
    return {}


class _StopRequest:
  """SIGTERM/SIGINT ask the loop to stop at the next step boundary and checkpoint first.

  A second Ctrl-C while stopping falls back to the default handler (immediate interrupt).
  """

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. some notebook runners): no handler
        pass
    return self

  def _handle(self, signum, frame):
    logging.warning("Signal %d: stopping after this step and saving a checkpoint.", signum)
    self.requested = True
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def agreed(self, sync_point: bool) -> bool:
    """Whether to stop now. Hosts must all stop at the same step, so with several processes
    they only compare flags (a collective) at sync points (the log steps)."""
    if jax.process_count() == 1:
      return self.requested
    if not sync_point:
      return False
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))


class TrainState(train_state.TrainState):
  """flax's TrainState, whose apply_gradients takes the optimizer's fused form where it has one
  that runs here (optimizer.Adamw on CPU with the C++ kernels on), else tx.update as usual."""

  def apply_gradients(self, *, grads, **kwargs):
    hyper = getattr(self.tx, "hyper", None)
    if hyper is None or not hyper.runs_fused(self.params):
      return super().apply_gradients(grads=grads, **kwargs)
    params, opt_state = hyper.apply_fused(self.params, grads, self.opt_state)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)


def create_train_state(task: Task, tx, rng) -> TrainState:
  return TrainState.create(apply_fn=None, params=task.init_params(rng), tx=tx)


def train(config, workdir: str, task: Task, source=None):
  """Trains `task` as `config` says, resuming from the latest checkpoint in `workdir`.

  `source` defaults to make_source(config.data, ...); callers that already built it pass it in.
  """
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
  # A checkpoint at step 0 is a start point too (launch.import_checkpoint writes imported
  # weights there): resume whenever one exists.
  latest = checkpointer.latest_step()
  start_step = latest or 0
  per_call = resolve_steps_per_call(config.steps_per_call, start_step, config.total_steps,
                                    config.log_every, config.checkpoint_every,
                                    config.figure_every, config.eval_every)
  if (config.total_steps - start_step) % per_call:
    raise ValueError(
        f"config.steps_per_call={per_call} does not divide the {config.total_steps - start_step} "
        f"steps left after resuming at step {start_step} of config.total_steps="
        f"{config.total_steps}; choose a divisor, or 0 for automatic")
  parallel = Parallel(config.parallel, per_call)
  if source is None:
    source = make_source(config.data, tuple(config.input_shape), config.seed)
  is_chief = jax.process_index() == 0
  if is_chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  schedule = learning_rate_schedule(config)
  tx = task.make_optimizer(config, schedule)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))

  init_state = functools.partial(create_train_state, task, tx)
  if latest is not None:
    abstract = parallel.state_shardings(jax.eval_shape(init_state, init_rng))
    state = parallel.place_state(checkpointer.restore_state(abstract))
    logging.info("Resumed from %s at step %d.", workdir, start_step)
  else:
    state = parallel.init_state(init_state, init_rng)
    host = parallel.host_state(state)
    params = task.pretrained_params(jax.device_get(host.params))
    if params is not None:  # the optimizer state does not depend on the parameter values
      state = parallel.place_state(host.replace(params=params))
  logging.info("%d train step(s) per compiled call.", per_call)

  step_fn = parallel.compile_step(task.loss_fn, schedule, config.grad_accum_steps,
                                  config.skip_nonfinite)
  guard = NonFiniteGuard(config.skip_nonfinite, checkpointer)
  batches = source.batches(global_batch_size=config.batch_size, start_step=start_step,
                           process_index=jax.process_index(),
                           process_count=jax.process_count())
  logger = TrainLogger(workdir, total_steps=config.total_steps,
                       global_batch_size=config.batch_size, start_step=start_step,
                       enabled=is_chief)
  best = None
  if task.best_metric and config.keep_best and config.eval_every:
    best = BestCheckpoint(workdir, task.best_metric)
  figure_images = None

  def save_checkpoint(step):
    guard.settle()  # never a checkpoint of a state that went non-finite
    with logger.excluded():
      host = parallel.host_state(state)
      checkpointer.save(step, host, *task.export(host.params), force=True)

  def validation_record(step) -> dict:
    """The held-out metrics at `step`, 'val_'-prefixed; keeps the params if they are the best."""
    with logger.excluded():
      host = parallel.host_state(state)
      held_out = task.validate(jax.device_get(host.params))
      if best is not None and best.improves(held_out):
        best.save(step, held_out, host, *task.export(host.params))
    return {f"val_{name}": value for name, value in held_out.items()}

  try:
    with _StopRequest() as stop:
      step = start_step
      while step < config.total_steps:
        local_batches = [next(batches) for _ in range(per_call)]
        if figure_images is None:
          figure_images = local_batches[0]["image"][:config.figure_examples]
        state, metrics = step_fn(state, parallel.place_batch(local_batches), train_rng)
        guard.watch(step, metrics)
        step += per_call
        last = step == config.total_steps

        def due(every: int) -> bool:  # the call just run included a step that is a multiple
          return every > 0 and (step % every < per_call or last)

        if due(config.log_every) or due(config.figure_every) or due(config.eval_every):
          guard.settle()  # on every host, so that all stop at the same call
        record = {}
        if due(config.log_every):
          record.update({k: float(v) for k, v in jax.device_get(metrics).items()
                         if k not in GUARD_METRICS})
        if due(config.eval_every):
          record.update(validation_record(step))
        if record:
          logger.log(step, record)
        if due(config.figure_every) and is_chief:
          with logger.excluded():
            params = jax.device_get(parallel.host_state(state).params)
            path = task.save_figure(params, figure_images, step, workdir)
            if path:
              logging.info("Figure: %s", path)
        stopping = stop.agreed(due(config.log_every))
        if due(config.checkpoint_every) or stopping:
          save_checkpoint(step)
        if stopping:
          logging.warning("Stopped at step %d; rerun the same command to resume.", step)
          break

    guard.settle()
  finally:  # saves in flight finish, also when the run stops on an error
    checkpointer.close()
    if best is not None:
      best.close()
    logger.close()
  if is_chief:
    with open(os.path.join(workdir, "status.json"), "w") as f:
      json.dump({"step": step, "total_steps": config.total_steps,
                 "finished": step >= config.total_steps, "skipped_steps": guard.skipped}, f)
  return parallel.host_state(state)
