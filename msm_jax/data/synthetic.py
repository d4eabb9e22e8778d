"""Embedded, offline synthetic radio spectrograms (numpy only) and the source streaming them.

A spectrogram is (Nt time frames, Nf frequency bins, C channels) of linear power on a unit-power
noise floor. Each pixel is exponentially distributed (complex Gaussian samples through an STFT) with
mean 1 + scene power, where the scene is a random mix of emitters, each at its own SNR:
  lte         OFDM band, on/off resource-block groups per subframe, a control symbol at the start
              of each subframe and an always-on pilot comb (LTE's cell reference signals)
  nr          OFDM band, one contiguous allocation per slot, empty uplink slots of a TDD pattern and
              periodic SSB bursts, no always-on pilots (NR)
  narrowband  a thin carrier, continuous or keyed on/off, possibly hopping in frequency
  chirp       a sawtooth or triangular frequency sweep
  pulses      short periodic wideband bursts (radar-like)
Channels are antennas seeing the same scene through their own frequency-selective gain, with
independent noise.

This is the 'synthetic' scene model of msm_jax.data.generators, where other scene models plug in
beside it, and SyntheticSource streams any registered model.
"""
import functools
import itertools
import queue
import threading
import weakref

import numpy as np

from msm_jax.data import parallel, pool
from msm_jax.data.generators import SPLIT_IDS, SPLITS, Generator, get_generator
from msm_jax.data.normalize import compute_stats, normalize
from msm_jax.data.source import check_input_shape, local_batch_size

MAX_EMITTERS = 6
EMPTY_FRACTION = 0.05  # scenes of pure noise, as in real captures of an idle band
SNR_DB = (0.0, 25.0)
MIN_FLUCTUATION = np.float32(1e-8)
STATS_EXAMPLES = 64  # fixed sample the synthetic source standardises with


def _integer(rng, low, high):
  """rng.integers(low, high) that tolerates tiny shapes where high <= low (then returns low)."""
  return int(rng.integers(low, max(low + 1, high)))


def _band(rng, n_freq, min_frac, max_frac):
  """A random contiguous frequency band covering min_frac..max_frac of the bins."""
  width = _integer(rng, max(1, round(min_frac * n_freq)), round(max_frac * n_freq) + 1)
  start = _integer(rng, 0, n_freq - width + 1)
  return slice(start, start + width)


def _fading(rng, n_time, n_freq):
  """Multiplicative gain of a multipath channel: a ripple up to 6 dB deep drifting in time (Doppler)."""
  depth_db = rng.uniform(0.0, 6.0)
  freq_period = rng.uniform(0.5, 4.0) * n_freq
  time_period = rng.uniform(2.0, 20.0) * n_time
  phase = (np.arange(n_time)[:, None] / time_period + np.arange(n_freq)[None, :] / freq_period
           + rng.uniform())
  return 10.0 ** (depth_db / 20.0 * np.sin(2 * np.pi * phase))


def _lte(rng, scene, power):
  n_time, n_freq = scene.shape
  band = _band(rng, n_freq, 0.1, 0.6)
  width = band.stop - band.start
  subframe = _integer(rng, 2, n_time // 6 + 1)  # frames per 1 ms subframe
  offset = _integer(rng, 0, subframe)
  groups = _integer(rng, 2, 10)  # resource-block groups scheduled independently
  alloc = rng.random((n_time // subframe + 2, groups)) < rng.uniform(0.2, 1.0)
  time_frame = np.arange(n_time) + offset
  on = alloc[np.ix_(time_frame // subframe, np.arange(width) * groups // width)]
  on[time_frame % subframe == 0] = True  # control region spans the band at each subframe start
  level = on * np.float32(power)
  pilot_spacing = _integer(rng, 3, 7)
  level[:, (np.arange(width) + offset) % pilot_spacing == 0] = power * rng.uniform(0.5, 1.0)
  scene[:, band] += level * _fading(rng, n_time, width)


def _nr(rng, scene, power):
  n_time, n_freq = scene.shape
  band = _band(rng, n_freq, 0.1, 0.8)
  width = band.stop - band.start
  slot = _integer(rng, 1, n_time // 8 + 1)
  n_slots = n_time // slot + 2
  lo = rng.integers(0, width, n_slots)
  hi = lo + 1 + (rng.random(n_slots) * (width - lo)).astype(int)
  tdd_period = _integer(rng, 2, 6)
  uplink = np.arange(n_slots) % tdd_period >= tdd_period - _integer(rng, 0, 2)
  scheduled = (rng.random(n_slots) < rng.uniform(0.3, 1.0)) & ~uplink
  slot_of_frame = (np.arange(n_time) + _integer(rng, 0, slot)) // slot
  freq = np.arange(width)
  on = ((freq >= lo[slot_of_frame, None]) & (freq < hi[slot_of_frame, None])
        & scheduled[slot_of_frame, None])
  ssb_period = _integer(rng, 4, 21)  # slots between SS/PBCH bursts
  ssb_time = (slot_of_frame % ssb_period == 0) & ~uplink[slot_of_frame]
  ssb_width = max(1, width // 5)
  ssb_start = _integer(rng, 0, width - ssb_width + 1)
  on[np.ix_(ssb_time, np.arange(ssb_start, ssb_start + ssb_width))] = True
  scene[:, band] += on * _fading(rng, n_time, width) * power


def _narrowband(rng, scene, power):
  n_time, n_freq = scene.shape
  width = _integer(rng, 1, n_freq // 32 + 2)
  dwell = _integer(rng, 1, n_time // 4 + 1)  # frames per on/off or hop segment
  n_segments = n_time // dwell + 1
  segment = np.arange(n_time) // dwell
  if rng.random() < 0.3:  # frequency hopper
    start = rng.integers(0, n_freq - width + 1, n_segments)
  else:
    start = np.full(n_segments, _integer(rng, 0, n_freq - width + 1))
  keyed = rng.random(n_segments) < (1.0 if rng.random() < 0.5 else rng.uniform(0.3, 0.9))
  freq = np.arange(n_freq)
  on = ((freq >= start[segment, None]) & (freq < start[segment, None] + width)
        & keyed[segment, None])
  scene += on * np.float32(power)


def _chirp(rng, scene, power):
  n_time, n_freq = scene.shape
  band = _band(rng, n_freq, 0.1, 1.0)
  width = band.stop - band.start
  period = rng.uniform(4.0, 4.0 + 2.0 * n_time)  # frames per sweep
  phase = (np.arange(n_time) / period + rng.uniform()) % 1.0
  if rng.random() < 0.5:  # triangular sweep instead of sawtooth
    phase = 1.0 - np.abs(2.0 * phase - 1.0)
  centre = phase * (width - 1)
  sigma = rng.uniform(0.4, 2.0)
  offset = (np.arange(width)[None, :] - centre[:, None]) / sigma
  scene[:, band] += power * np.exp(-0.5 * offset * offset)


def _pulses(rng, scene, power):
  n_time, n_freq = scene.shape
  band = _band(rng, n_freq, 0.2, 1.0)
  interval = _integer(rng, 3, n_time // 3 + 1)
  duration = _integer(rng, 1, min(3, interval))
  on = (np.arange(n_time) + _integer(rng, 0, interval)) % interval < duration
  scene[on, band] += np.float32(power)


_EMITTERS = (_lte, _nr, _narrowband, _chirp, _pulses)
_EMITTER_WEIGHTS = np.array([0.25, 0.25, 0.2, 0.15, 0.15])


def synthetic_power_spectrogram(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
  """One radio-like spectrogram: float32 linear power of `shape` (Nt, Nf, C) over unit-power noise."""
  n_time, n_freq, n_chan = shape
  scene = np.zeros((n_time, n_freq), np.float32)  # mean signal power per pixel, in noise units
  n_emitters = rng.integers(1, MAX_EMITTERS + 1) if rng.random() >= EMPTY_FRACTION else 0
  for _ in range(n_emitters):
    emitter = _EMITTERS[rng.choice(len(_EMITTERS), p=_EMITTER_WEIGHTS)]
    emitter(rng, scene, 10.0 ** (rng.uniform(*SNR_DB) / 10.0))
  # Each antenna sees the scene through its own mild frequency-selective gain (up to 3 dB).
  ripple = rng.uniform(0.0, 3.0, n_chan) * np.sin(
      2 * np.pi * (np.arange(n_freq)[:, None] / rng.uniform(0.5, 4.0, n_chan) / n_freq
                   + rng.uniform(size=n_chan)))
  mean_power = 1.0 + scene[:, :, None] * (10.0 ** (ripple / 10.0)).astype(np.float32)
  # float32 exponential draws below ~1e-8 come out as exactly 0; clip there so no pixel falls to
  # the -100 dB log floor (EPS) that real noise never reaches.
  fluctuation = np.maximum(rng.standard_exponential(shape, dtype=np.float32), MIN_FLUCTUATION)
  return mean_power * fluctuation


def _example(rng, shape, split):
  del split  # no domains: every split is drawn from the same scene distribution
  return {"spectrogram": synthetic_power_spectrogram(rng, shape)}


GENERATOR = Generator(_example)


def generate_example(generator_name: str, seed: int, split: str, input_shape, index: int) -> dict:
  """Raw features of example `index` of `split`: a pure function of the arguments, so any worker
  process makes the same example."""
  # Train keeps the seed sequence [seed, index]; other splits add their id, so never overlap.
  key = [seed, index] if split == "train" else [seed, SPLIT_IDS[split], index]
  return parallel.generate(generator_name, input_shape, key, split)


def raw_example(generator_name: str, seed: int, split: str, input_shape, index: int) -> dict:
  """Example `index` of `split`, only the features a pool stores: 'spectrogram' (linear power)
  and, for labelled generators, 'label'."""
  example = generate_example(generator_name, seed, split, input_shape, index)
  labelled = get_generator(generator_name).label != "none"
  return {key: np.asarray(example[key]) for key in ("spectrogram", "label")[:1 + labelled]}


def model_inputs(raw: dict, stats: dict) -> dict:
  """What the training loop gets of raw features (one example's, or stacked): 'image', the log
  power normalised with `stats` (normalize.normalize), and 'label' (int32) where labelled."""
  inputs = {"image": normalize(raw["spectrogram"], stats)}
  if "label" in raw:
    inputs["label"] = np.asarray(raw["label"], np.int32)
  return inputs


def make_features(generator_name: str, seed: int, split: str, input_shape, stats: dict,
                  index: int) -> dict:
  """model_inputs of example `index`. Made whole in a worker: the standardisation is a large
  part of the work, and would otherwise serialise in the consumer."""
  return model_inputs(raw_example(generator_name, seed, split, input_shape, index), stats)


class SyntheticSource:
  """Source of generated examples: example i of a split is a pure function of (seed, split, i).

  With `workers` > 0, batches are generated by that many processes (spawned on first use, so
  JAX's threads are never forked): one numpy thread makes ~350 ViT-S-sized scenes per second,
  far fewer than an accelerator trains on. With `num_examples` > 0 the train split is instead the
  fixed pool of its first `num_examples` examples (in a new order every epoch), and every split
  is read from pools generated once and cached on disk (msm_jax/data/pool.py).
  """

  def __init__(self, input_shape, *, seed: int, prefetch: int = 2, generator: str = "synthetic",
               split: str = "train", workers: int = 0, num_examples: int = 0,
               cache_dir: str = ""):
    self.input_shape = check_input_shape(input_shape)
    if split not in SPLITS:
      raise ValueError(f"config.data.split={split!r} must be one of {SPLITS} for generated data.")
    if not isinstance(num_examples, (int, np.integer)) or num_examples < 0:
      raise ValueError(f"config.data.num_examples={num_examples!r} must be 0 (a new example for "
                       "every step) or the number of training examples to generate once.")
    self._seed, self._prefetch, self.split = seed, prefetch, split
    self._generator_name = generator
    self.generator = get_generator(generator)
    self.classes = self.generator.classes
    frontend = self.generator.frontend  # audio generators only
    self.frontend = frontend(self.input_shape) if frontend else None
    self._workers, self._processes = workers, None
    self.num_examples = int(num_examples)
    self._cache_dir = pool.cache_dir(cache_dir)
    # Statistics always come from the train split, whichever split this source reads.
    if self.num_examples:
      stats_examples = self._pooled("train", STATS_EXAMPLES)["spectrogram"]
    else:
      stats_examples = (self.example(i, "train")["spectrogram"] for i in range(STATS_EXAMPLES))
    self.stats = compute_stats(stats_examples)

  def example(self, index: int, split: str | None = None) -> dict:
    """Raw features of example `index` of `split` (default: this source's split)."""
    return generate_example(self._generator_name, self._seed, split or self.split,
                            self.input_shape, index)

  def _pooled(self, split: str, count: int) -> dict[str, np.ndarray]:
    """The first `count` examples of `split`, raw, from (or into) the on-disk pool."""
    make = functools.partial(raw_example, self._generator_name, self._seed, split,
                             self.input_shape)
    name = pool.pool_name(self._generator_name, self.input_shape, self._seed, split)
    return pool.load(make, count, name, self._cache_dir,
                     f"{self._generator_name} {split} examples")

  def _map(self, make, indices) -> list:
    if self._workers < 1:
      return [make(i) for i in indices]
    if self._processes is None:
      self._processes = parallel.spawn_pool(self._workers)
      weakref.finalize(self, self._processes.shutdown, wait=False, cancel_futures=True)
    return list(self._processes.map(make, indices, chunksize=-(-len(indices) // self._workers)))

  def power(self, index: int) -> np.ndarray:
    """Linear power of example `index` of this source's split (before log + standardisation)."""
    return self.example(index)["spectrogram"]

  def _batch(self, indices) -> dict:
    make = functools.partial(make_features, self._generator_name, self._seed, self.split,
                             self.input_shape, self.stats)
    examples = self._map(make, indices)
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}

  def _features(self, raw: dict, indices) -> dict:
    """model_inputs of pooled examples `indices` of `raw`."""
    return model_inputs({key: value[indices] for key, value in raw.items()}, self.stats)

  def batches(self, *, global_batch_size: int, start_step: int,
              process_index: int = 0, process_count: int = 1):
    local = local_batch_size(global_batch_size, process_index, process_count)
    if self.num_examples:
      raw = self._pooled(self.split, self.num_examples)

      def make_batch(step):
        # Position p of the stream is pool example order_e[p % n] of epoch e = p // n, where
        # order_e is a permutation drawn from (seed, e) alone: resumable, any process split.
        first = step * global_batch_size + process_index * local
        epochs, within = np.divmod(np.arange(first, first + local), self.num_examples)
        indices = np.empty(local, np.int64)
        for epoch in np.unique(epochs):
          order = np.random.default_rng([self._seed, int(epoch)]).permutation(self.num_examples)
          indices[epochs == epoch] = order[within[epochs == epoch]]
        return self._features(raw, indices)
    else:
      def make_batch(step):
        first = step * global_batch_size + process_index * local
        return self._batch(range(first, first + local))

    return prefetched(make_batch, itertools.count(start_step), self._prefetch)

  def epoch(self, batch_size: int, num_examples: int = 0):
    """Examples 0..num_examples-1 of the split, in order, in batches (the last may be smaller).

    Generated splits are endless, so `num_examples` (config.data.eval_examples) must be > 0.
    """
    if num_examples < 1 or batch_size < 1:
      raise ValueError(f"Evaluating generated data needs config.data.eval_examples >= 1 (got "
                       f"{num_examples}) and a batch size >= 1 (got {batch_size}).")
    starts = range(0, num_examples, batch_size)
    if self.num_examples:
      raw = self._pooled(self.split, num_examples)
      return (self._features(raw, np.arange(s, min(s + batch_size, num_examples)))
              for s in starts)
    return prefetched(lambda s: self._batch(range(s, min(s + batch_size, num_examples))), starts,
                      self._prefetch)


class _Failure:
  def __init__(self, error):
    self.error = error


_END = object()  # marks the end of finite keys


def prefetched(make_item, keys, depth: int):
  """Iterator over make_item(key) for `keys`, computed up to `depth` items ahead in a daemon thread."""
  if depth < 1:
    return (make_item(key) for key in keys)  # a generator: closeable like the prefetcher
  return _Prefetcher(make_item, keys, depth)


class _Prefetcher:
  """Closing or dropping this iterator stops its thread: the thread holds no reference to it and
  polls a stop flag instead of blocking forever on a full queue; as a daemon it never keeps the
  process alive either."""

  def __init__(self, make_item, keys, depth):
    items = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item):
      while not stop.is_set():
        try:
          items.put(item, timeout=0.1)
          return
        except queue.Full:
          pass

    def produce():
      try:
        for key in keys:
          if stop.is_set():
            return
          put(make_item(key))
        put(_END)
      except Exception as error:  # re-raised in the consumer, where it belongs
        put(_Failure(error))

    self._items, self._stop = items, stop
    self.thread = threading.Thread(target=produce, name="msm-data-prefetch", daemon=True)
    self.thread.start()

  def __iter__(self):
    return self

  def __next__(self):
    if self._stop.is_set():
      raise StopIteration
    item = self._items.get()
    if item is _END:
      self.close()
      raise StopIteration
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    return item

  def close(self):
    self._stop.set()

  def __del__(self):
    self.close()
