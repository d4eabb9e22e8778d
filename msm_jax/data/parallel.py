"""Generated examples computed in worker processes, in order, for the dataset builders.

Example i of a split is generator(default_rng([seed, split_id, i]), shape, split) whichever process
computes it, so a dataset does not depend on the number of workers. Workers are spawned (not
forked): the builder process has TensorFlow's threads running, which must not be forked.
"""
import functools
import multiprocessing
import os

import numpy as np

from msm_jax.data.generators import check_example, get_generator

MIN_PARALLEL = 32


def example(name: str, shape, seed: int, split_id: int, split: str, index: int) -> dict:
  """Example `index` of `split` from generator `name` (checked against its promise)."""
  generator = get_generator(name)
  rng = np.random.default_rng([seed, split_id, index])
  return check_example(generator(rng, shape, split), generator, shape, name)


def examples(name: str, shape, seed: int, split_id: int, split: str, count: int,
             workers: int | None = None):
  """Yields examples 0..count-1 of `split` in order, computed by `workers` processes (1: here).

  By default one worker per CPU, except for fewer than MIN_PARALLEL examples, which are made here:
  starting a spawned worker (importing numpy and the scene models) costs about a second.
  """
  if workers is None:
    workers = os.cpu_count() or 1 if count >= MIN_PARALLEL else 1
  workers = min(workers, count)
  make = functools.partial(example, name, tuple(shape), seed, split_id, split)
  if workers <= 1:
    yield from map(make, range(count))
    return
  with multiprocessing.get_context("spawn").Pool(workers) as pool:
    yield from pool.imap(make, range(count), chunksize=4)
