"""Throughput of the compiled MSM train step on synthetic arrays (no input pipeline, no TF)."""
import functools
import resource
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.models.build import compute_dtype, resolve_dtype
from msm_jax.models.flops import msm_train_flops_per_sample
from msm_jax.training.loop import create_train_state
from msm_jax.training.optimizer import learning_rate_schedule, make_optimizer
from msm_jax.training.parallel import Parallel, resolve_steps_per_call
from msm_jax.training.pretrain import MsmTask
from msm_jax.training.validate import validate_config


# The matmul peak is sampled before, between and after stretches of timed steps, not once
# before or after them: on a shared or turbo-boosting machine the sustained rate drifts within
# minutes, and the ratio of two rates measured minutes apart would compare the machine's moods,
# not the code. Each stretch also gets its own fraction, against the samples on either side of it.
PEAK_SAMPLES = 15  # in all; the peak is their median, robust to a single short burst
TIMED_STRETCHES = 4  # at most; the peak samples come in one more group than there are stretches


def default_peak_size() -> int:
  """The matmul size of the peak measurement: large enough to reach the sustained rate, small
  enough to time in a fraction of a second."""
  return 2048 if jax.devices()[0].platform == "cpu" else 8192


def train_step_flops(task: MsmTask, batch_size: int) -> int:
  """Analytic matrix-product FLOPs (forward + backward) of one train step of `batch_size`."""
  return batch_size * msm_train_flops_per_sample(task.config.model, task.input_shape, task.keep)


def matmul_rate(dtype, size: int):
  """A function returning the FLOP/s of one size^3 matrix product in `dtype` on every device,
  compiled and warmed up here."""
  mesh_sharding = jax.sharding.NamedSharding(
      jax.sharding.Mesh(np.asarray(jax.devices()), ("d",)), jax.sharding.PartitionSpec("d"))
  n = jax.device_count()
  a = jax.device_put(jnp.ones((n, size, size), dtype), mesh_sharding)
  matmul = jax.jit(lambda x: jnp.einsum("bij,bjk->bik", x, x))
  matmul(a).block_until_ready()

  def sample() -> float:
    start = time.perf_counter()
    matmul(a).block_until_ready()
    return n * 2 * size**3 / (time.perf_counter() - start)
  return sample


class StepSetup(NamedTuple):
  step: Any  # step(state, batch, rng) -> (state, metrics), compiled on its first call
  state: Any
  batch: Any  # one fixed random batch, config.steps_per_call steps' worth
  rng: Any
  task: MsmTask
  parallel: Parallel


def compiled_step(config, batch_size: int) -> StepSetup:
  """The MSM train step of `config` with what it needs to be called repeatedly and timed."""
  config.batch_size = batch_size
  config.warmup_steps = min(config.warmup_steps, config.total_steps - 1)
  validate_config(config)
  config.steps_per_call = resolve_steps_per_call(config.steps_per_call)
  task = MsmTask(config)
  parallel = Parallel(config.parallel, config.steps_per_call)
  schedule = learning_rate_schedule(config)
  tx = make_optimizer(config, schedule)
  state = parallel.init_state(functools.partial(create_train_state, task, tx), jax.random.key(0))
  step = parallel.compile_step(task.loss_fn, schedule, config.grad_accum_steps)
  images = np.random.default_rng(0).standard_normal(
      (batch_size,) + tuple(config.input_shape), dtype=np.float32)
  batch = parallel.place_batch([{"image": images}] * config.steps_per_call)
  return StepSetup(step, state, batch, jax.random.key(1), task, parallel)


def benchmark(config, batch_size: int, steps: int, peak_size: int = 0,
              profile: bool = False) -> dict:
  """Times `steps` MSM train steps (config.steps_per_call per compiled call); with `profile`,
  also where the time goes."""
  if profile and (config.parallel != "jit" or jax.devices()[0].platform != "cpu"):
    raise ValueError("--profile needs config.parallel='jit' on CPU: it names modules from "
                     "XLA:CPU's trace events (on a GPU, open a jax.profiler trace in "
                     "TensorBoard or Perfetto instead)")
  # Auto: the steps per call that a run logging every `steps` steps would get.
  per_call = config.steps_per_call = resolve_steps_per_call(config.steps_per_call, steps)
  if steps % per_call:
    raise ValueError(f"--steps={steps} must be a multiple of config.steps_per_call={per_call}")
  # Room for the compile call and the timed ones, in whole calls (validate_config requires it).
  config.total_steps = -(-max(config.total_steps, steps + per_call) // per_call) * per_call
  step, state, batch, rng, task, parallel = compiled_step(config, batch_size)
  params = parallel.host_state(state).params

  state, metrics = step(state, batch, rng)  # compile
  jax.block_until_ready(metrics)
  peak_sample = matmul_rate(compute_dtype(config.model.dtype), peak_size or default_peak_size())
  stretches = np.array_split(np.arange(steps // per_call), min(TIMED_STRETCHES, steps // per_call))
  samples_per_group = -(-PEAK_SAMPLES // (len(stretches) + 1))
  peak_groups = [[peak_sample() for _ in range(samples_per_group)]]
  stretch_seconds, faults, system_seconds = [], 0, 0.0
  for stretch in stretches:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in stretch:
      state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    stretch_seconds.append(time.perf_counter() - start)
    # On CPU, fresh temporaries are page-faulted in every call; worth watching (docs/performance.md).
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults += after.ru_minflt - usage.ru_minflt
    system_seconds += after.ru_stime - usage.ru_stime
    peak_groups.append([peak_sample() for _ in range(samples_per_group)])
  seconds = sum(stretch_seconds) / steps
  faults, system_seconds = faults / steps, system_seconds / steps
  peaks = sum(peak_groups, [])
  peak = float(np.median(peaks))
  step_flops = train_step_flops(task, batch_size)
  # Per stretch: its seconds per step, and its rate over the median of the samples around it.
  stretch_step_seconds = [t / (len(s) * per_call) for t, s in zip(stretch_seconds, stretches)]
  stretch_fractions = [step_flops / t / float(np.median(before + after)) for t, before, after
                       in zip(stretch_step_seconds, peak_groups, peak_groups[1:])]
  extra = {}
  if profile:
    from msm_jax.training.profile import time_by_module
    extra["time_by_module_ms"] = time_by_module(step, state, batch, rng, per_call)

  count = lambda tree: int(sum(x.size for x in jax.tree.leaves(tree)))
  return {
      "variant": config.variant,
      "dtype": resolve_dtype(config.model.dtype),  # what ran ('auto' resolved)
      "parallel": config.parallel,
      "batch_size": batch_size,
      "input_shape": list(config.input_shape),
      "mask_ratio": config.mask_ratio,
      "steps_per_call": per_call,
      "seconds_per_step": seconds,
      "samples_per_sec": batch_size / seconds,
      "step_flops": step_flops,
      "achieved_flops_per_sec": step_flops / seconds,
      "peak_flops_per_sec": peak,
      "peak_flops_per_sec_range": [float(min(peaks)), float(max(peaks))],
      "fraction_of_peak": step_flops / seconds / peak,
      "seconds_per_step_by_stretch": stretch_step_seconds,
      "fraction_of_peak_by_stretch": stretch_fractions,
      "encoder_params": count(params["encoder"]),
      "decoder_params": count(params["decoder"]),
      "final_loss": float(metrics["loss"]),
      "page_faults_per_step": faults,
      "system_cpu_seconds_per_step": system_seconds,
      "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      **extra,
  }
