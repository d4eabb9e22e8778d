"""Fixed pools of generated examples, made once and kept on disk (config.data.num_examples > 0).

Scene models are slow next to a small model's train step (LTE/NR IQ scenes render at ~13 per
second on one core): a finetune that drew fresh scenes for every step spent most of its time
generating them. A pool is the first N examples of a split - example i is the one the endless
stream would give - generated once by one process per core and stored under the cache directory,
keyed by everything that determines the examples: generator, shape, seed, split and a digest of
the source of msm_jax/data (the scene models), so that changing a scene model never reads stale
scenes. Pools are nested: a request for N examples reads the first N of a stored larger pool, and
extends a smaller one.

The cache directory is config.data.cache_dir, else $MSM_JAX_CACHE, else ~/.cache/msm_jax. Files
there are disposable: delete them to free the space, and an unreadable one is generated again.
"""
import functools
import hashlib
import os
import pathlib
import time
import zipfile

import numpy as np
from absl import logging

from msm_jax.data import parallel

CACHE_ENV = "MSM_JAX_CACHE"
MIN_PARALLEL = 32  # fewer examples are made here: starting worker processes costs ~1 s each
PROGRESS_SECONDS = 10.0


def cache_dir(configured: str = "") -> str:
  """Where pools are stored: `configured` (config.data.cache_dir), $MSM_JAX_CACHE or
  ~/.cache/msm_jax, as a 'pools' folder."""
  root = configured or os.environ.get(CACHE_ENV) or os.path.join(
      os.path.expanduser("~"), ".cache", "msm_jax")
  return os.path.join(root, "pools")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
  """A digest of every .py file of msm_jax/data: part of every pool's key."""
  root = pathlib.Path(__file__).resolve().parent
  digest = hashlib.sha256()
  for path in sorted(root.rglob("*.py")):
    digest.update(str(path.relative_to(root)).encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()[:16]


def pool_name(generator: str, shape, seed: int, split: str) -> str:
  return (f"{generator}-{'x'.join(str(d) for d in shape)}-seed{seed}-{split}-{code_digest()}"
          ".npz")


def load(make, count: int, name: str, directory: str, what: str) -> dict[str, np.ndarray]:
  """The first `count` examples {feature: (count, ...) array} of the pool `name` in `directory`,
  generating what is missing with `make(index) -> {feature: array}` (picklable) and storing the
  extended pool. `what` names the examples in progress messages."""
  path = os.path.join(directory, name)
  stored = _read(path)
  have = len(next(iter(stored.values()))) if stored else 0
  if have >= count:
    return {key: value[:count] for key, value in stored.items()}
  made = _generate(make, range(have, count), what)
  pool = {key: np.concatenate(([stored[key]] if stored else []) + [np.stack([e[key] for e in made])])
          for key in made[0]}
  _write(path, pool)
  return pool


def _read(path: str) -> dict[str, np.ndarray] | None:
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as stored:
      pool = {key: stored[key] for key in stored.files}
    if pool and len({len(v) for v in pool.values()}) == 1:
      return pool
    problem = "features of different lengths"
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:  # truncated
    problem = f"{type(error).__name__}: {error}"
  logging.warning("Generated-example pool %s is unreadable (%s); generating it again.", path,
                  problem)
  return None


def _write(path: str, pool: dict[str, np.ndarray]) -> None:
  """Writes atomically: a concurrent reader sees the old pool or the new one, never a partial."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = f"{path}.{os.getpid()}.partial"
  with open(partial, "wb") as f:
    np.savez(f, **pool)
  os.replace(partial, path)


def _generate(make, indices: range, what: str) -> list[dict]:
  """make(i) for `indices`, in order, by one process per core, logging progress and ETA."""
  count, start = len(indices), time.perf_counter()
  workers = min(count, os.cpu_count() or 1) if count >= MIN_PARALLEL else 1
  logging.info("Generating %d %s (examples %d-%d) with %d process(es), once; later runs read "
               "them from the cache.", count, what, indices.start, indices.stop - 1, workers)
  pool = parallel.spawn_pool(workers) if workers > 1 else None
  made, last_report = [], start
  try:
    results = pool.map(make, indices, chunksize=parallel.CHUNK) if pool else map(make, indices)
    for example in results:
      made.append(example)
      now = time.perf_counter()
      if now - last_report >= PROGRESS_SECONDS and len(made) < count:
        rate = len(made) / (now - start)
        logging.info("  %d / %d %s, %.0f s, about %.0f s left", len(made), count, what,
                     now - start, (count - len(made)) / rate)
        last_report = now
  finally:
    if pool:
      pool.shutdown(wait=len(made) == count, cancel_futures=len(made) < count)
  logging.info("Generated %d %s in %.0f s.", count, what, time.perf_counter() - start)
  return made
