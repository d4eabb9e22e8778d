"""Generated examples computed in worker processes, in order: for the dataset builders, and the
pool the synthetic source generates in.

Example i of a split is generator(default_rng([seed, split_id, i]), shape, split, **capture)
whichever process computes it, so a dataset does not depend on the number of workers. Workers are
spawned (not forked): the builder process has TensorFlow's threads running, which must not be
forked. Each worker runs single-threaded BLAS: with one worker per core, BLAS threads (numpy's
matrix products in the scene models) would only oversubscribe the cores.
"""
import concurrent.futures
import contextlib
import functools
import multiprocessing
import os

import numpy as np

from msm_jax.data import generators
from msm_jax.data.generators import SPLIT_IDS, check_example, get_generator

MIN_PARALLEL = 32
CHUNK = 4  # examples a worker takes at a time
_WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def generate(name: str, shape, key, split: str, capture: dict | None = None) -> dict:
  """An example of `split` from generator `name` drawn with np.random.default_rng(key), checked
  against the generator's promise; `capture`: the capture settings of an IQ-level generator
  (msm_jax.data.generators)."""
  generator = get_generator(name)
  example = generator(np.random.default_rng(key), shape, split, **(capture or {}))
  return check_example(example, generator, shape, name)


def example(name: str, shape, seed: int, split_id: int, split: str, index: int,
            capture: dict | None = None) -> dict:
  """Example `index` of `split` of a generated dataset."""
  return generate(name, shape, [seed, split_id, index], split, capture)


def split_examples(params: dict, split: str):
  """(index, example) of `split` of a generated dataset described by builder params: 'generator',
  'shape', 'seed', 'num_examples' (train) / 'num_eval_examples' (the others), optional 'capture'."""
  count = params["num_examples"] if split == "train" else params["num_eval_examples"]
  return enumerate(examples(params["generator"], params["shape"], params["seed"], SPLIT_IDS[split],
                            split, count, capture=params.get("capture")))


def examples(name: str, shape, seed: int, split_id: int, split: str, count: int,
             workers: int | None = None, capture: dict | None = None):
  """Yields examples 0..count-1 of `split` in order, computed by `workers` processes (1: here).

  By default one worker per CPU, except for fewer than MIN_PARALLEL examples, which are made here:
  starting a spawned worker (importing numpy and the scene models) costs about a second.
  """
  if workers is None:
    workers = os.cpu_count() or 1 if count >= MIN_PARALLEL else 1
  workers = min(workers, count)
  make = functools.partial(example, name, tuple(shape), seed, split_id, split, capture=capture)
  if workers <= 1:
    yield from map(make, range(count))
    return
  pool, finished = spawn_pool(workers), False
  try:
    yield from pool.map(make, range(count), chunksize=CHUNK)
    finished = True
  finally:  # all made: let the workers exit; stopped early: drop the queued work, don't wait
    pool.shutdown(wait=finished, cancel_futures=not finished)


def spawn_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """`workers` spawned processes with single-threaded BLAS that know every generator registered
  in this process, also those registered at run time (a spawned worker starts from a fresh
  interpreter)."""
  with _environment(_WORKER_ENVIRONMENT):  # read by the workers as they start
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_register_generators, initargs=(dict(generators.GENERATORS),))
    # The executor starts a worker for each task submitted while none is idle: start them all
    # now, while the environment holds.
    concurrent.futures.wait([pool.submit(int) for _ in range(workers)])
  return pool


def _register_generators(registry: dict):
  generators.GENERATORS.update(registry)


@contextlib.contextmanager
def _environment(values: dict):
  """Sets environment variables for the duration of the block, then restores them."""
  saved = {name: os.environ.get(name) for name in values}
  os.environ.update(values)
  try:
    yield
  finally:
    for name, value in saved.items():
      if value is None:
        os.environ.pop(name)
      else:
        os.environ[name] = value
