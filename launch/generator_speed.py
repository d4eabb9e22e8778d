"""Scenes per second of registered generators at their dataset's default size: in this process,
and with the worker pool that make_dataset uses (msm_jax.data.parallel, one worker per core).

  python -m launch.generator_speed [--generators=radio_scene,lte_nr] [--scenes=N] [--workers=N]

Prints one line per generator and mode: wall-clock scenes/s, CPU seconds per scene (comparable on
a busy machine, where wall clock is not) and the time a 10,000-scene training set (+ 2 x 1,000
validation / test) would take at that rate. The pool's rate leaves out its first round (each
worker starting, about a second, then making its first chunk of scenes), printed apart.
"""
import os
import resource
import time

from absl import app, flags

from launch import cli

from msm_jax.data import parallel, radio_pretrain, radio_segmentation
from msm_jax.data.csi import csi_har
from msm_jax.data.generators import GENERATORS

# The size each generator's dataset is built at by default (make_dataset without --height/--width).
DEFAULT_SHAPES = {"lte_nr": radio_segmentation.DEFAULT_SHAPE,
                  "lte_nr_holdout": radio_segmentation.DEFAULT_SHAPE,
                  "csi_har": csi_har.DEFAULT_SHAPE}
TRAINING_SET = 12_000  # make_dataset's default: 10,000 train + 1,000 validation + 1,000 test

_GENERATORS = flags.DEFINE_list("generators", ["radio_scene", "lte_nr"],
                                f"Generators to time, among {sorted(GENERATORS)}.")
_SCENES = flags.DEFINE_integer("scenes", None, "Scenes per measurement (default: 6 rounds of the "
                               "pool, 48 on 2 cores).", lower_bound=1)
_WORKERS = flags.DEFINE_integer("workers", None, "Pool size (default: one per CPU core).",
                                lower_bound=2)


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _report(name, mode, rate, cpu_per_scene, extra=""):
  minutes = TRAINING_SET / rate / 60
  print(f"{name:12s} {mode:22s} {rate:6.2f} scenes/s  {cpu_per_scene:5.3f} CPU-s/scene  "
        f"12k-scene build ~{minutes:5.1f} min{extra}", flush=True)


def measure(name: str, count: int, workers: int):
  shape = DEFAULT_SHAPES.get(name, radio_pretrain.DEFAULT_SHAPE)  # radio_pretrain's otherwise
  print(f"{name} at {'x'.join(map(str, shape))}:", flush=True)
  parallel.example(name, shape, 0, 0, "train", count)  # imports and caches out of the timing
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in parallel.examples(name, shape, 0, 0, "train", count, workers=1):
    pass
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  _report(name, "1 process", count / wall, cpu / count)
  start, children = time.perf_counter(), _children_cpu()
  times = [time.perf_counter() for _ in parallel.examples(name, shape, 0, 0, "train", count,
                                                           workers=workers)]
  cpu = _children_cpu() - children  # the pool's workers have exited: their CPU time is counted
  first = workers * parallel.CHUNK  # scenes of the first round, which includes the start-up
  _report(name, f"pool of {workers} workers", (count - first) / (times[-1] - times[first - 1]),
          cpu / count, f" (first round {times[first - 1] - start:.1f} s)")


def main(argv):
  del argv
  unknown = sorted(set(_GENERATORS.value) - set(GENERATORS))
  if unknown:
    raise app.UsageError(f"--generators: unknown {unknown}; registered: {sorted(GENERATORS)}.")
  workers = _WORKERS.value or os.cpu_count() or 2
  scenes = _SCENES.value or 6 * workers * parallel.CHUNK
  if scenes < 2 * workers * parallel.CHUNK:
    raise app.UsageError(f"--scenes={scenes}: at least {2 * workers * parallel.CHUNK} (two rounds "
                         f"of {workers} workers taking {parallel.CHUNK} scenes each).")
  print(f"{os.cpu_count()} CPU cores; {scenes} scenes per measurement.")
  for name in _GENERATORS.value:
    measure(name, scenes, workers)


if __name__ == "__main__":
  cli.run(main)
