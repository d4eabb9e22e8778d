"""tf.data source reading a locally built tensorflow-datasets dataset (e.g. radio_pretrain).

TensorFlow is imported lazily, through `import_tf`, so importing this module costs nothing.
Everything is offline: the dataset is opened from its directory with `tfds.builder_from_directory`
(no registry lookup, no GCS; tfds 4.9.10 also ships with GCS access disabled).
"""
import functools
import importlib.util
import os
import re

from msm_jax.data.normalize import STATS_FILENAME, normalize, read_stats
from msm_jax.data.source import check_input_shape, local_batch_size

FEATURE = "spectrogram"  # float32 linear power (Nt, Nf, C) in every dataset
LABEL = "label"  # labelled datasets: class id (tfds ClassLabel) or per-pixel ids (Nt, Nf)
# Recordings: complex64 IQ windows stored instead of FEATURE, with metadata['shape'] the spectrogram
# shape; the pipeline turns them into spectrograms (msm_jax.data.radio.stft, the generators' STFT).
IQ = "iq"
_VERSION_DIR = re.compile(r"^\d+\.\d+\.\d+$")


@functools.cache
def import_tf():
  """Imports (tensorflow, tensorflow_datasets) with every GPU hidden from TensorFlow.

  JAX owns the accelerators; TensorFlow only reads files on the CPU and must not reserve
  accelerator memory.
  """
  missing = [m for m in ("tensorflow", "tensorflow_datasets") if not importlib.util.find_spec(m)]
  if missing:
    raise ImportError(
        f"{' and '.join(missing)} not installed: built datasets (launch.make_dataset, "
        "config.data.source=tfds) need TensorFlow and tensorflow-datasets; install them with: "
        "pip install 'msm-jax[data]' (Colab has both already)")
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError as error:  # TF was initialised before us: acceptable only if it holds no GPU
    if tf.config.get_visible_devices("GPU"):
      raise RuntimeError("TensorFlow was initialised with a visible GPU before msm_jax.data could "
                         "hide it; import msm_jax data pipelines before using TensorFlow.") from error
  import tensorflow_datasets as tfds
  return tf, tfds


class DatasetNotBuiltError(FileNotFoundError, ValueError):
  """The dataset named in the config has not been built under the configured data_dir."""


def find_dataset_dir(data_dir: str, name: str) -> str:
  """The newest built version directory DATA_DIR/NAME/X.Y.Z (NAME may include a '/config')."""
  if not data_dir:
    raise DatasetNotBuiltError(
        f"config.data.data_dir is empty; set it to the directory where config.data.name={name!r} "
        f"was built with: python -m launch.make_dataset --dataset={name} --data_dir=DIR")
  root = os.path.join(os.path.expanduser(data_dir), name)
  versions = [v for v in (os.listdir(root) if os.path.isdir(root) else [])
              if _VERSION_DIR.match(v) and os.path.exists(os.path.join(root, v, "dataset_info.json"))]
  if not versions:
    raise DatasetNotBuiltError(
        f"config.data.name={name!r} is not built under config.data.data_dir={data_dir!r} (no "
        f"{root}/<version>/dataset_info.json). Build it with: "
        f"python -m launch.make_dataset --dataset={name} --data_dir={data_dir}")
  newest = max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))
  return os.path.join(root, newest)


class TfdsSource:
  """Source over a built tfds dataset: per-process file shards, seeded shuffle, resumable."""

  def __init__(self, *, name: str, data_dir: str, split: str, input_shape, seed: int,
               shuffle_buffer: int, prefetch: int):
    _, tfds = import_tf()
    self.input_shape = check_input_shape(input_shape)
    self.dataset_dir = find_dataset_dir(data_dir, name)
    self._builder = tfds.builder_from_directory(self.dataset_dir)
    features = self._builder.info.features
    if FEATURE in features:
      stored = tuple(features[FEATURE].shape)
    elif IQ in features:
      stored = tuple(self._builder.info.metadata["shape"])
    else:
      raise ValueError(f"{self.dataset_dir} (config.data.name={name!r}) has no {FEATURE!r} (or "
                       f"{IQ!r}) feature; it has {sorted(features.keys())}.")
    if stored != self.input_shape:
      raise ValueError(
          f"config.input_shape={self.input_shape} does not match the spectrogram shape {stored} "
          f"(time frames, frequency bins, channels) stored in {self.dataset_dir}; set "
          f"config.input_shape={stored} or rebuild the dataset with launch.make_dataset "
          "--height --width --channels. Spectrograms are never resized silently.")
    # A split may be sliced the tfds way, e.g. 'train[:64]' (the first 64: a label budget).
    if split.partition("[")[0] not in self._builder.info.splits:
      raise ValueError(f"config.data.split={split!r} is not in {self.dataset_dir}; it has "
                       f"{sorted(self._builder.info.splits.keys())} (slices like 'train[:64]' "
                       "work too).")
    try:
      self.stats = read_stats(os.path.join(self.dataset_dir, STATS_FILENAME))
    except FileNotFoundError as error:
      raise FileNotFoundError(
          f"{error} Build the dataset (again) with: python -m launch.make_dataset "
          f"--dataset={name} --data_dir={data_dir}, which writes them from the train split.") from None
    if shuffle_buffer < 0 or prefetch < 0:
      raise ValueError(f"config.data.shuffle_buffer={shuffle_buffer} and config.data.prefetch="
                       f"{prefetch} must be >= 0.")
    self._split, self._seed = split, seed
    self._shuffle_buffer, self._prefetch = shuffle_buffer, prefetch
    self.classes = dataset_classes(self._builder.info, self.dataset_dir)
    self.frontend = (self._builder.info.metadata or {}).get("frontend")  # audio datasets only
    if LABEL in features and tuple(features[LABEL].shape) not in ((), self.input_shape[:2]):
      raise ValueError(f"{self.dataset_dir}: {LABEL!r} has shape {features[LABEL].shape}; expected a "
                       f"class id () or a per-pixel map {self.input_shape[:2]}.")

  def _prepare(self, ds):
    """Raw (undecoded) examples -> {'image': standardised float32, ['label': int32]}."""
    tf, _ = import_tf()
    features = self._builder.info.features
    stats = self.stats
    key = FEATURE if FEATURE in features else IQ
    decode = features[key].decode_example
    if key == IQ:
      from msm_jax.data.radio.stft import spec_for, tf_power_spectrogram
      spec, decode_iq = spec_for(*self.input_shape[:2]), decode
      decode = lambda raw: tf_power_spectrogram(decode_iq(raw), spec)[..., None]
    has_label = LABEL in features

    def prepare(example):
      out = {"image": normalize(decode(example[key]), stats, log=tf.math.log)}
      if has_label:
        out["label"] = tf.cast(features[LABEL].decode_example(example[LABEL]), tf.int32)
      return out

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def _read(self, split, read_config, shuffle_files):
    _, tfds = import_tf()
    features = self._builder.info.features
    # Everything stays serialised until after any resume skip, which then costs no decoding.
    decoders = {key: tfds.decode.SkipDecoding() for key in (FEATURE, IQ, LABEL) if key in features}
    return self._builder.as_dataset(split=split, shuffle_files=shuffle_files,
                                    read_config=read_config, decoders=decoders)

  def batches(self, *, global_batch_size: int, start_step: int,
              process_index: int = 0, process_count: int = 1):
    tf, tfds = import_tf()
    local = local_batch_size(global_batch_size, process_index, process_count)
    # Equal disjoint per-process slices of the split; each process reads only its own.
    split = tfds.split_for_jax_process(self._split, process_index=process_index,
                                       process_count=process_count, drop_remainder=True)
    if self._builder.info.splits[self._split].num_examples < process_count:
      raise ValueError(f"config.data.split={self._split!r} of {self.dataset_dir} has fewer examples "
                       f"than the {process_count} processes reading it.")
    options = tf.data.Options()
    options.deterministic = True  # parallel reads and maps keep their order: reproducible streams
    ds = self._read(split, tfds.ReadConfig(shuffle_seed=self._seed, options=options),
                    shuffle_files=True)
    if self._shuffle_buffer > 1:
      ds = ds.shuffle(self._shuffle_buffer, seed=self._seed, reshuffle_each_iteration=True)
    # Resume: drop the examples of steps already trained on, before the decoding + normalising map.
    ds = self._prepare(ds.repeat().skip(start_step * local))
    ds = ds.batch(local, drop_remainder=True)
    if self._prefetch:
      ds = ds.prefetch(self._prefetch)
    return iter(tfds.as_numpy(ds))

  def epoch(self, batch_size: int, num_examples: int = 0):
    _, tfds = import_tf()
    ds = self._read(self._split, tfds.ReadConfig(), shuffle_files=False)
    if num_examples > 0:
      ds = ds.take(num_examples)
    ds = self._prepare(ds).batch(batch_size)
    return iter(tfds.as_numpy(ds.prefetch(max(self._prefetch, 1))))


def dataset_classes(info, dataset_dir: str) -> tuple[str, ...]:
  """Label names of a built dataset: its ClassLabel names, else metadata['classes'], else ()."""
  if LABEL not in info.features:
    return ()
  names = getattr(info.features[LABEL], "names", None) or (info.metadata or {}).get("classes")
  if not names:
    raise ValueError(f"{dataset_dir}: {LABEL!r} has no class names (a ClassLabel, or 'classes' in "
                     "the dataset metadata).")
  return tuple(names)
