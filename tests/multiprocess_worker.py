"""One process of a 2-process CPU job, started by tests/test_multiprocess.py (not a test itself).

  python tests/multiprocess_worker.py MODE COORDINATOR_PORT PROCESS_ID NUM_PROCESSES OUT

MODE is
  jit    STEPS train steps of the tiny config through the library's multi-host path:
         Parallel('jit'), each process's half of the SyntheticSource batch assembled into one
         global array; process 0 writes {losses, params} (params flattened) to OUT (an .npz path).
  pmap   the same with Parallel('pmap') (gradients pmean-ed over the devices of both processes).
  train  the whole loop, msm_jax.training.pretrain.pretrain(config, workdir=OUT), which resumes
         from OUT's latest checkpoint if it has one.

The environment (set by the test) gives each process exactly one CPU device. Exit code
GLOO_UNAVAILABLE means this jax cannot do CPU collectives with gloo; the test skips then.
"""
import os
import sys

GLOO_UNAVAILABLE = 77
STEPS = 3
GLOBAL_BATCH = 8
SEED = 0

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def tiny_config():
  """The config of both tests, shared by the workers and the single-process reference."""
  from configs.pretrain import get_config
  config = get_config("tiny")
  config.input_shape = (32, 32, 1)
  config.batch_size = GLOBAL_BATCH
  config.total_steps = STEPS
  config.warmup_steps = 1
  config.parallel = "jit"
  config.seed = SEED
  config.log_every = 1
  config.checkpoint_every = 2  # and the last step: checkpoints 2 and 3, for the resume test
  config.figure_every = 0  # no matplotlib figure on the last step
  return config


def make_init(config, task):
  """rng -> initial TrainState, exactly as the loop builds it."""
  import functools
  from msm_jax.training.loop import create_train_state
  from msm_jax.training.optimizer import learning_rate_schedule, make_optimizer
  tx = make_optimizer(config, learning_rate_schedule(config))
  return functools.partial(create_train_state, task, tx)


def loop_keys(config):
  """(init_rng, train_rng) exactly as msm_jax.training.loop.train derives them."""
  import jax
  return tuple(jax.random.split(jax.random.key(config.seed)))


def flatten(params):
  """Parameters as one float64 vector, in tree-flatten order."""
  import jax
  import numpy as np
  return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)])


def _unavailable(reason):
  print(f"GLOO_UNAVAILABLE: {reason}", file=sys.stderr, flush=True)
  sys.exit(GLOO_UNAVAILABLE)


def initialize(port: int, process_id: int, num_processes: int):
  import jax
  try:
    # Must precede initialize(): the CPU client picks its collectives when it is created.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, ValueError) as e:
    _unavailable(f"jax_cpu_collectives_implementation='gloo' rejected: {e!r}")
  try:  # private, so only trusted when it imports: without it initialize() has the last word
    from jax._src.lib import _jax
  except ImportError:
    _jax = None
  if _jax is not None and not hasattr(_jax, "make_gloo_tcp_collectives"):
    _unavailable("this jaxlib was built without gloo (no make_gloo_tcp_collectives)")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                             num_processes=num_processes, process_id=process_id,
                             initialization_timeout=60)
  assert jax.process_count() == num_processes, jax.process_count()
  assert jax.process_index() == process_id, jax.process_index()
  assert jax.local_device_count() == 1, jax.local_devices()
  assert jax.device_count() == num_processes, jax.devices()


def run_steps(mode: str, out: str):
  import jax
  import numpy as np
  from msm_jax.data.synthetic import SyntheticSource
  from msm_jax.training.optimizer import learning_rate_schedule
  from msm_jax.training.parallel import Parallel
  from msm_jax.training.pretrain import MsmTask

  config = tiny_config()
  config.parallel = mode
  task = MsmTask(config)
  schedule = learning_rate_schedule(config)
  parallel = Parallel(config.parallel)
  init_rng, train_rng = loop_keys(config)
  state = parallel.init_state(make_init(config, task), init_rng)
  step_fn = parallel.compile_step(task.loss_fn, schedule, config.grad_accum_steps)
  source = SyntheticSource(tuple(config.input_shape), seed=SEED, prefetch=0)
  stream = source.batches(global_batch_size=config.batch_size, start_step=0,
                          process_index=jax.process_index(), process_count=jax.process_count())
  losses = []
  for _ in range(STEPS):
    local_batch = next(stream)
    assert local_batch["image"].shape[0] == config.batch_size // jax.process_count()
    batch = parallel.place_batch([local_batch])
    if mode == "jit":
      assert batch["image"].shape[0] == config.batch_size  # one global array
    state, metrics = step_fn(state, batch, train_rng)
    losses.append(float(metrics["loss"]))
  params = flatten(jax.device_get(parallel.host_state(state).params))
  if jax.process_index() == 0:
    np.savez(out, losses=np.asarray(losses), params=params)


def run_train(workdir: str):
  from msm_jax.training.pretrain import pretrain
  pretrain(tiny_config(), workdir)


def main(argv):
  mode, port, process_id, num_processes, out = argv[1:]
  initialize(int(port), int(process_id), int(num_processes))
  import jax
  if mode in ("jit", "pmap"):
    run_steps(mode, out)
  elif mode == "train":
    run_train(out)
  else:
    raise ValueError(f"unknown mode {mode!r}")
  jax.distributed.shutdown()
  print(f"worker {process_id}: done", flush=True)


if __name__ == "__main__":
  try:
    main(sys.argv)
  except BaseException:  # noqa: B036 - SystemExit(GLOO_UNAVAILABLE) included
    code = sys.exc_info()[1].code if isinstance(sys.exc_info()[1], SystemExit) else 1
    if code != GLOO_UNAVAILABLE:
      import traceback
      traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip atexit: jax.distributed's shutdown hook would wait at a barrier for the other process,
    # so the test would only learn of this failure when that one times out.
    os._exit(code if isinstance(code, int) and code else 1)
