"""The compile choice, made outside the step: jit over a ('data',) device mesh, or pmap.

`jit` (default): state replicated and batch sharded with NamedSharding over every device of every
process; per-host batches are assembled into one global array, so it scales to multi-host pods
after `jax.distributed.initialize`. `pmap`: state replicated along a leading device axis, each
local device gets its slice of the host batch, gradients are averaged with lax.pmean.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from msm_jax.training.step import make_multi_step, make_train_step

PMAP_AXIS = "batch"
# The most steps per call that steps_per_call=0 ("auto") picks on CPU: the ViT-S step measured
# 6-10 % faster with 4 per call than with 1 (docs/performance.md); `tiny`'s small temporaries
# showed no difference between 1 and 8.
AUTO_STEPS_PER_CALL = 4


def resolve_steps_per_call(requested: int, *boundaries: int, platform: str = "") -> int:
  """config.steps_per_call, with 0 ("auto") resolved.

  Auto is 1 on accelerators. On CPU, where XLA allocates and page-faults a step's temporaries
  afresh on every call, it is the largest n <= AUTO_STEPS_PER_CALL that divides every number in
  `boundaries` (the first and last step, the log/figure/checkpoint cadences), so that calls end
  exactly on every step the run logs or saves at.
  """
  if requested:
    return requested
  if (platform or jax.devices()[0].platform) != "cpu":
    return 1
  common = math.gcd(*boundaries)
  return max(n for n in range(1, AUTO_STEPS_PER_CALL + 1) if common % n == 0)


class Parallel:
  """`steps_per_call` > 1 compiles that many steps into one call (make_multi_step); batches
  are then stacked on a new leading axis (see place_batch)."""

  def __init__(self, mode: str, steps_per_call: int = 1):
    if mode not in ("jit", "pmap"):
      raise ValueError(f"config.parallel={mode!r}: choose 'jit' or 'pmap'")
    self.mode = mode
    self.steps_per_call = steps_per_call
    self.mesh = Mesh(np.asarray(jax.devices()), ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    stacked = (None,) if steps_per_call > 1 else ()
    self.data_sharding = NamedSharding(self.mesh, P(*stacked, "data"))
    # pmap's layout: a leading axis of length local_device_count, one slice per local device.
    self.local_stack = NamedSharding(Mesh(np.asarray(jax.local_devices()), (PMAP_AXIS,)),
                                     P(PMAP_AXIS))

  def compile_step(self, loss_fn, schedule, grad_accum_steps: int = 1,
                   skip_nonfinite: bool = False):
    options = dict(grad_accum_steps=grad_accum_steps, skip_nonfinite=skip_nonfinite)
    if self.mode == "jit":
      step = self._calls(make_train_step(loss_fn, schedule, **options))
      return jax.jit(step, in_shardings=(self.replicated, self.data_sharding, self.replicated),
                     out_shardings=(self.replicated, self.replicated), donate_argnums=0)
    step = self._calls(make_train_step(loss_fn, schedule, axis_name=PMAP_AXIS, **options))
    pstep = jax.pmap(step, axis_name=PMAP_AXIS, in_axes=(0, 0, None), donate_argnums=0)

    @functools.wraps(step)
    def run(state, batch, rng):
      state, metrics = pstep(state, batch, rng)
      return state, jax.tree.map(lambda m: m[0], metrics)  # pmean made every replica equal
    return run

  def _calls(self, step):
    return step if self.steps_per_call == 1 else make_multi_step(step)

  def init_state(self, init_fn, rng):
    """Creates the state straight in the step's layout: no host round trip, and under jit
    every host builds its replicas locally (device_put of a committed single-device state
    would be a cross-host transfer)."""
    if self.mode == "jit":
      return jax.jit(init_fn, out_shardings=self.replicated)(rng)
    return self.place_state(jax.jit(init_fn)(rng))

  def place_state(self, state):
    """Host/single-device state -> the layout the compiled step expects."""
    if self.mode == "jit":
      return jax.device_put(state, self.replicated)
    def replicate(x):
      x = jnp.asarray(x)  # TrainState.step starts as a Python int
      copies = [jax.device_put(x[None], d) for d in jax.local_devices()]
      return jax.make_array_from_single_device_arrays(
          (len(copies),) + x.shape, self.local_stack, copies)
    return jax.tree.map(replicate, state)

  def host_state(self, state):
    """The layout-free state to checkpoint or evaluate (the first replica under pmap)."""
    if self.mode == "jit":
      return state
    return jax.tree.map(lambda x: x[0], state)

  def state_shardings(self, abstract_state):
    """Target shardings for restoring a checkpoint straight into this layout."""
    if self.mode == "jit":
      target = self.replicated
    else:  # restored on one device, then replicated by place_state
      target = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=target), abstract_state)

  def place_batch(self, local_batches: list):
    """This process's rows of the global batch of each step of a call (a list of
    `steps_per_call` dicts) -> device arrays for the compiled step."""
    if len(local_batches) != self.steps_per_call:
      raise ValueError(f"{len(local_batches)} batches for {self.steps_per_call} steps per call")
    if self.steps_per_call == 1:
      batch = local_batches[0]
    else:
      batch = jax.tree.map(lambda *xs: np.stack(xs), *local_batches)
    if self.mode == "jit":
      return jax.tree.map(
          lambda x: jax.make_array_from_process_local_data(self.data_sharding, x), batch)
    n = jax.local_device_count()

    def per_device(x):  # the device axis leads, any step axis follows it
      if self.steps_per_call == 1:
        return x.reshape((n, -1) + x.shape[1:])
      return np.swapaxes(x.reshape((x.shape[0], n, -1) + x.shape[2:]), 0, 1)
    return jax.tree.map(lambda x: jax.device_put(per_device(x), self.local_stack), batch)
