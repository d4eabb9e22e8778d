"""The data interface the training loop relies on, and the factory choosing an implementation.

This module and everything it imports at top level is TensorFlow-free: the tf.data source is
imported only when `config.data.source == 'tfds'`.
"""
import os
from typing import Iterator, Protocol

import numpy as np

from msm_jax.data.normalize import normalization_stats

SOURCES = ("synthetic", "tfds")
MAX_AUTO_WORKERS = 32  # each spawned generator holds ~100 MB; pod hosts have 100+ cores


class Source(Protocol):
  input_shape: tuple[int, int, int]  # (Nt time frames, Nf frequency bins, C channels)
  classes: tuple[str, ...]  # label names of a labelled dataset, () when unlabelled
  # {'mean', 'std'} of the train split's log power, used to standardise; or the fixed statistics
  # config.data.normalization names (normalize.normalization_stats).
  stats: dict
  # Audio: the msm_jax.data.audio.frontend.AudioFrontend settings (a dict) that made the
  # spectrograms from sound, kept by finetuned models for launch.predict; None for radio and CSI.
  frontend: dict | None

  def batches(self, *, global_batch_size: int, start_step: int,
              process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Yields, for step = start_step, start_step+1, ..., this process's slice of global batch `step`:
    {'image': float32 array (global_batch_size // process_count, Nt, Nf, C)}, already log-power +
    standardised, plus for labelled data 'label': int32 class ids (B,) or per-pixel maps (B, Nt, Nf).

    Deterministic: the same (seed, step, process_index, process_count) always gives the same arrays,
    so a restarted run continues the exact data stream, and processes never see the same example.
    The synthetic source also guarantees that the process slices of a step concatenate (in process
    order) to the 1-process batch; the tfds source shards files per process instead (no host reads
    the whole dataset), so its 2-process stream is a different, equally deterministic, one.
    """
    ...

  def epoch(self, batch_size: int, num_examples: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over the split (for evaluation), the same features as `batches`; the last
    batch may be smaller. `num_examples` > 0 stops after that many examples."""
    ...


def make_source(data_config, input_shape: tuple[int, int, int], seed: int,
                split: str | None = None) -> Source:
  """Builds the Source named by `data_config.source` (an ml_collections.ConfigDict: config.data),
  reading `split` (default config.data.split)."""
  input_shape = check_input_shape(input_shape)
  split = split or data_config.split
  if data_config.source == "synthetic":
    from msm_jax.data.synthetic import SyntheticSource
    source = SyntheticSource(input_shape, seed=seed, prefetch=data_config.prefetch,
                             generator=data_config.generator, split=split,
                             workers=generator_workers(data_config.get("workers", -1)),
                             num_examples=data_config.get("num_examples", 0),
                             cache_dir=data_config.get("cache_dir", ""))
  elif data_config.source == "tfds":
    from msm_jax.data.tfds_pipeline import TfdsSource
    source = TfdsSource(name=data_config.name, data_dir=data_config.data_dir, split=split,
                        input_shape=input_shape, seed=seed,
                        shuffle_buffer=data_config.shuffle_buffer, prefetch=data_config.prefetch)
  else:
    raise ValueError(f"config.data.source={data_config.source!r} is unknown; "
                     f"use one of {', '.join(repr(s) for s in SOURCES)}.")
  # Sources read `stats` whenever they normalise a batch, so setting it here is enough.
  source.stats = normalization_stats(data_config.get("normalization", "dataset"), source.stats)
  return source


def generator_workers(workers: int) -> int:
  """Processes generating synthetic examples for config.data.workers; -1 (auto): none when JAX
  computes on the CPU (the step is the bottleneck and XLA wants the cores), one per core but one
  (at most MAX_AUTO_WORKERS) when it computes on an accelerator."""
  if not isinstance(workers, int) or workers < -1:
    raise ValueError(f"config.data.workers={workers!r} must be -1 (auto), 0 (generate in the "
                     "prefetch thread) or a number of processes.")
  if workers >= 0:
    return workers
  import jax
  if jax.default_backend() == "cpu":
    return 0
  return min(MAX_AUTO_WORKERS, max(1, (os.cpu_count() or 2) - 1))


def check_input_shape(input_shape) -> tuple[int, int, int]:
  """Returns `input_shape` as a tuple of 3 positive ints, or raises naming config.input_shape."""
  shape = tuple(input_shape)
  if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
    raise ValueError(f"config.input_shape={input_shape!r} must be 3 positive integers "
                     "(time frames, frequency bins, channels).")
  return tuple(int(d) for d in shape)


def local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  """This process's share of a global batch; the global batch must split evenly across processes."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must lie in [0, process_count={process_count}).")
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(f"global_batch_size={global_batch_size} (config.batch_size) must be a positive "
                     f"multiple of the process count {process_count}.")
  return global_batch_size // process_count


def validation_batches(config) -> list[dict[str, np.ndarray]]:
  """The held-out examples validated during training: the first config.data.val_examples of
  config.data.val_split in batches of config.eval_batch_size, read once and kept in memory, so
  that every validation sees the same ones. A source of its own: the training stream is
  untouched."""
  data = config.data.copy_and_resolve_references()
  data.workers = 0  # read once: a pool of generator processes would outlive its use
  source = make_source(data, tuple(config.input_shape), config.seed, split=data.val_split)
  batches = list(source.epoch(config.eval_batch_size, data.val_examples))
  if not batches:
    raise ValueError(f"config.data.val_split={data.val_split!r} has no examples to validate on; "
                     "name another split, or set config.eval_every=0.")
  return batches
