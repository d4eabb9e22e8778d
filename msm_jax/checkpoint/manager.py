"""Orbax checkpoints shared by pretraining (writer) and finetuning (reader).

Layout: WORKDIR/checkpoints/<step>/{state,encoder,model_config}
  state        - the whole train state pytree (step, params, opt_state), to resume training.
  encoder      - only the encoder parameter subtree. It duplicates part of `state` on disk, but
                 lets finetuning load what it needs without knowing the optimizer / train-state
                 structure of the pretraining run.
  model_config - a JSON dict describing the model, so finetuning can rebuild the encoder.

Every process of a multi-host job must call save / restore: orbax coordinates the hosts itself
(barriers, primary-host-only metadata writes), so nothing here checks process_index.
"""
from __future__ import annotations

import json
import threading
import weakref

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec

CHECKPOINT_SUBDIR = "checkpoints"
_ITEMS = ("state", "encoder", "model_config")


class CheckpointNotFoundError(FileNotFoundError, ValueError):
  """No (matching) checkpoint. Subclasses both, so `except ValueError` and
  `except FileNotFoundError` callers both catch it."""


def checkpoint_dir(workdir: str) -> epath.Path:
  """WORKDIR/checkpoints as an absolute path (orbax's tensorstore backend rejects relative
  paths, only when it starts writing). Remote paths (gs://...) are left alone."""
  path = epath.Path(workdir) / CHECKPOINT_SUBDIR
  return path if "://" in str(workdir) else path.absolute()


def _item_handlers() -> dict:
  # Explicit handlers (rather than item_names) so a manager that has never saved - e.g. the
  # finetuning reader - can read item metadata and restore every item without orbax warnings.
  return {
      "state": ocp.StandardCheckpointHandler(),
      "encoder": ocp.StandardCheckpointHandler(),
      "model_config": ocp.JsonCheckpointHandler(),
  }


def _missing(path, workdir, step=None, available=()) -> CheckpointNotFoundError:
  what = "no checkpoint" if step is None else f"no checkpoint for step {step}"
  extra = f" (available steps: {sorted(available)})" if available else ""
  return CheckpointNotFoundError(f"{what} in {path} (workdir={workdir!r}){extra}")


def _restore_target(abstract_state):
  """Turns the caller's target into a tree of ShapeDtypeStructs that all carry a sharding.

  A leaf without a sharding would make orbax fall back to the sharding stored in the checkpoint,
  which names the *saving* run's devices and fails ("Topology mismatch") on a different device
  count. jax.eval_shape returns sharding=None, so such leaves default to fully replicated over
  all (global) devices, which is what a data-parallel train state uses anyway.
  """
  replicated = NamedSharding(Mesh(np.asarray(jax.devices()), ("replica",)), PartitionSpec())

  def leaf(x):
    if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
      sharding = getattr(x, "sharding", None) or replicated
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return x  # numpy arrays / Python scalars are restored as that same host type

  return jax.tree.map(leaf, abstract_state)


class Checkpointer:
  """Orbax CheckpointManager over WORKDIR/checkpoints with items 'state', 'encoder', 'model_config'."""

  def __init__(self, workdir: str, *, max_to_keep: int = 3, async_save: bool = True):
    self.workdir = workdir
    self.directory = checkpoint_dir(workdir)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        # The training loop decides when to save; orbax should not skip any call.
        save_interval_steps=1,
        enable_async_checkpointing=async_save,
        # Remove half-written *.orbax-checkpoint-tmp dirs left by a killed run.
        cleanup_tmp_directories=True,
        create=True,
    )
    self._mngr = ocp.CheckpointManager(
        self.directory, options=options, item_handlers=_item_handlers()
    )
    self._closed = False
    # Safety net: a pending async save whose writer threads are torn down at interpreter exit
    # is lost (tmp dir + "cannot schedule new futures after interpreter shutdown"). Hooks in
    # threading's atexit list run before concurrent.futures shuts its executors down (the
    # plain `atexit` module runs too late), so finish the save there if close() was never
    # called. A weakref keeps the hook from keeping this object alive.
    ref = weakref.ref(self)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
      register(lambda: (c := ref()) is not None and c.close())

  def save(self, step: int, state, encoder_params, model_config: dict, *, force: bool = False) -> bool:
    """Starts saving (returns once device arrays are copied to host, so the caller may donate
    or overwrite `state` right away). Returns False when nothing was saved: the step already
    exists (e.g. the final save of a resumed run that trained no further - never overwrite) or
    is older than the latest saved step and force is False."""
    step = int(step)
    # Fail here, in the caller's thread, rather than later inside the async writer.
    try:
      json.dumps(model_config)
    except TypeError as e:
      raise TypeError(f"model_config must be JSON-serialisable: {e}") from e
    if step in self._mngr.all_steps():
      return False
    return self._mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            encoder=ocp.args.StandardSave(encoder_params),
            model_config=ocp.args.JsonSave(model_config),
        ),
        force=force,
    )

  def latest_step(self) -> int | None:
    # Includes a step still being written asynchronously; restore_state waits for it.
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def restore_state(self, abstract_state, step: int | None = None):
    """Restores 'state' into the structure and shardings of `abstract_state` (ShapeDtypeStructs
    with .sharding, or a concrete state). The checkpoint may come from a different device count."""
    self._mngr.wait_until_finished()  # the step may still be in flight from our own save
    step = self.latest_step() if step is None else int(step)
    if step is None or step not in self._mngr.all_steps():
      raise _missing(self.directory, self.workdir, step, self._mngr.all_steps())
    try:
      restored = self._mngr.restore(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardRestore(_restore_target(abstract_state))),
      )
    except ValueError as error:
      if "tree structures do not match" not in str(error):
        raise
      raise ValueError(
          f"The train state of step {step} in {self.directory} does not fit this run's (another "
          "model config, or an msm-jax before its own AdamW state): resume it with the config it "
          "was written with, use a new --workdir, or finetune from its encoder with "
          f"--config.init_from={self.workdir}. Orbax: {error}") from error
    return restored["state"]

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    if not self._closed:
      self._closed = True
      self._mngr.close()  # waits for pending saves first

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _read_only_manager(workdir: str, state_handler=None) -> ocp.CheckpointManager:
  path = checkpoint_dir(workdir)
  if not path.exists():
    raise _missing(path, workdir)
  options = ocp.CheckpointManagerOptions(
      read_only=True, create=False, save_interval_steps=0  # never write into another run
  )
  handlers = _item_handlers()
  if state_handler is not None:
    handlers["state"] = state_handler
  return ocp.CheckpointManager(path, options=options, item_handlers=handlers)


def _checked_step(mngr, workdir, step):
  steps = mngr.all_steps()
  step = mngr.latest_step() if step is None else int(step)
  if step is None or step not in steps:
    raise _missing(checkpoint_dir(workdir), workdir, step, steps)
  return step


def _host_target(metadata_tree):
  """numpy leaves make orbax read plain host arrays, whatever device count saved them."""
  return jax.tree.map(lambda m: np.empty(m.shape, m.dtype), metadata_tree)


def restore_encoder(workdir: str, step: int | None = None) -> tuple[dict, dict]:
  """(encoder params as host numpy arrays, model_config dict) from WORKDIR/checkpoints.

  The target tree is built from the checkpoint's own metadata, so no model or train-state code
  is needed; the caller places the arrays as it likes."""
  mngr = _read_only_manager(workdir)
  try:
    step = _checked_step(mngr, workdir, step)
    target = _host_target(mngr.item_metadata(step)["encoder"].tree)
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            encoder=ocp.args.StandardRestore(target), model_config=ocp.args.JsonRestore()
        ),
    )
    return restored["encoder"], restored["model_config"]
  finally:
    mngr.close()


def restore_params(workdir: str, step: int | None = None) -> tuple[dict, dict]:
  """(all model params of the train state as host numpy arrays, model_config dict).

  Reads only `state.params` (a partial restore: the optimizer state, often twice the size of the
  params, is never read). Finetuning uses it for the pretrained decoder blocks, inference for a
  finetuned model."""
  mngr = _read_only_manager(workdir, state_handler=ocp.PyTreeCheckpointHandler())
  try:
    step = _checked_step(mngr, workdir, step)
    meta = mngr.item_metadata(step)["state"].tree
    target = {"params": _host_target(meta["params"])}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=True),
            model_config=ocp.args.JsonRestore(),
        ),
    )
    return restored["state"]["params"], restored["model_config"]
  finally:
    mngr.close()
