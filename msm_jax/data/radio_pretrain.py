"""`radio_pretrain`: a tensorflow-datasets builder of unlabelled power spectrograms, built locally.

Examples are {'spectrogram': float32 linear power (Nt, Nf, C)} in train/validation/test splits,
from one or both of:
- a per-example generator registered in msm_jax.data.generators (`build`; default 'synthetic'
  here, 'radio_scene' in launch.make_dataset; labels, if any, are dropped). Example i of split s
  is generator(default_rng([seed, s, i]), shape, s, **capture), so a dataset is fully determined
  by its parameters, which are stored in its metadata.json; IQ-level generators store their
  capture settings (rate, frame length) there too.
- the user's SigMF / .npy recordings (`build_from_recordings`): consecutive windows of
  `window_seconds` (window k of the sorted files goes to validation if k % 10 == 8, test if 9, else
  train; neighbouring windows of one file are alike, so this split measures little beyond
  fitting). Each example also holds where it came from: 'source' (the file), 'start' (its first
  sample in the file), 'center_frequency' (Hz of that capture segment; NaN if unknown) and
  'annotations' (JSON list of the file's SigMF annotations overlapping the window, as in the
  file, in its sample indices). Alone, windows are stored as {'iq': complex64} and turned into
  spectrograms of metadata['shape'] by the tf.data pipeline with the generators' STFT
  (msm_jax.data.radio.stft). With `generated=` scenes added, the same STFT runs while building and
  every example stores its 'spectrogram'; generated ones have source 'generator:NAME', start -1,
  no centre frequency and no annotations.

After building, normalisation statistics of the train split are written to stats.json in the same
version directory (DATA_DIR/radio_pretrain/1.0.0/), where TfdsSource reads them.
tensorflow_datasets is imported lazily: the builder class is created by `builder_class()`.
"""
import functools
import glob
import json
import os

import numpy as np

from msm_jax.data import parallel
from msm_jax.data.generators import GENERATORS, SPLIT_IDS, get_generator
from msm_jax.data.normalize import STATS_FILENAME, compute_stats, write_stats
from msm_jax.data.radio import recordings as rec
from msm_jax.data.radio.scene import capture_config, capture_spec
from msm_jax.data.radio.stft import power_spectrogram, spec_for
from msm_jax.data.tfds_pipeline import FEATURE, IQ, import_tf

NAME = "radio_pretrain"
DEFAULT_SHAPE = (224, 224, 1)
# Where a recording example came from (see the module doc).
SOURCE, START, CENTER_FREQUENCY, ANNOTATIONS = "source", "start", "center_frequency", "annotations"


def generator_params(generator: str, shape, capture: dict | None = None) -> dict:
  """{'generator'[, 'capture']}: a registered generator and, if it renders IQ, its checked capture
  settings (msm_jax.data.radio.scene.capture_config: sample_rate, frame_seconds; defaults filled
  in) that can give `shape`."""
  if not get_generator(generator).capture:
    if capture:
      iq_level = sorted(name for name in GENERATORS if get_generator(name).capture)
      raise ValueError(f"generator {generator!r} draws spectrograms directly; capture settings "
                       f"{capture} apply only to the IQ-level generators ({', '.join(iq_level)}).")
    return {"generator": generator}
  config = capture_config(**(capture or {}))
  capture_spec(shape, config)
  return {"generator": generator,
          "capture": {"sample_rate": config.sample_rate, "frame_seconds": config.frame_seconds}}


def build_params(*, num_examples: int, shape, seed: int, generator: str = "synthetic",
                 num_eval_examples: int | None = None, capture: dict | None = None) -> dict:
  """The parameters defining a generated radio_pretrain (JSON-ready, as stored in metadata.json)."""
  if num_examples < 1 or len(shape) != 3 or min(shape) < 1 or seed < 0:
    raise ValueError(f"radio_pretrain needs num_examples >= 1, a shape of 3 positive ints and "
                     f"seed >= 0; got num_examples={num_examples}, shape={shape}, seed={seed}.")
  return {"num_examples": int(num_examples), "shape": [int(d) for d in shape], "seed": int(seed),
          **generator_params(generator, shape, capture),
          "num_eval_examples": int(num_eval_examples or max(1, num_examples // 10))}


@functools.cache
def builder_class():
  """The RadioPretrain builder class (registered with tfds as 'radio_pretrain' on first call)."""
  _, tfds = import_tf()

  class RadioPretrain(tfds.core.GeneratorBasedBuilder):
    """Unlabelled radio power spectrograms for Masked Spectrogram Modeling pretraining."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Generated spectrograms, parameters in metadata.json."}
    # tfds looks for a checksums file next to the builder's source, via the importlib_resources
    # package that tfds 4.9.10 does not install; nothing is downloaded, so there is no such file.
    code_path = None

    def __init__(self, *, params: dict, **kwargs):
      # Set before the base constructor, which already calls _info().
      self.params = params
      super().__init__(**kwargs)

    def _info(self):
      p = self.params
      if "generator" in p:
        features = {FEATURE: tfds.features.Tensor(shape=tuple(p["shape"]), dtype=np.float32,
                                                  encoding=tfds.features.Encoding.BYTES)}
      else:
        features = {IQ: tfds.features.Tensor(shape=(p["window_samples"],), dtype=np.complex64,
                                             encoding=tfds.features.Encoding.BYTES)}
      if "files" in p:
        features.update({SOURCE: tfds.features.Text(), START: tfds.features.Scalar(np.int64),
                         CENTER_FREQUENCY: tfds.features.Scalar(np.float64),
                         ANNOTATIONS: tfds.features.Text()})
      return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                            metadata=tfds.core.MetadataDict(p))

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      return {split: self._generate_examples(split) for split in SPLIT_IDS}

    def _generate_examples(self, split):
      p = self.params
      if "files" in p:
        yield from _recording_examples(p, split)
      if "generator" in p:
        # Keys after every window's: unique in the split alongside recordings.
        first = sum(count for _, count in p.get("files", []))
        origin = ({SOURCE: f"generator:{p['generator']}", START: -1, CENTER_FREQUENCY: np.nan,
                   ANNOTATIONS: "[]"} if "files" in p else {})
        for index, example in parallel.split_examples(p, split):
          yield first + index, {FEATURE: example[FEATURE], **origin}

    def _post_download_and_prepare_hook(self):
      write_train_stats(self)

  return RadioPretrain


def _window_split(window: int) -> str:
  return {8: "validation", 9: "test"}.get(window % 10, "train")


def _recording_examples(params, split):
  """(key, example) of `split` from params['files'] (see the module doc). Files are memory-mapped,
  so each split reads only its own windows."""
  n = params["window_samples"]
  spec = spec_for(*params["shape"][:2]) if "generator" in params else None
  window = 0  # across files: decides the split
  for path, count in params["files"]:
    mine = [k for k in range(count) if _window_split(window + k) == split]
    recording = rec.read_recording(path, params["sample_rate"]) if mine else None
    for k in mine:
      iq = recording.iq[k * n:(k + 1) * n]
      data = {FEATURE: power_spectrogram(iq, spec)[..., None]} if spec else {IQ: iq}
      frequency = recording.center_frequency_at(k * n)
      yield window + k, {**data, SOURCE: path, START: k * n,
                         CENTER_FREQUENCY: np.nan if frequency is None else float(frequency),
                         ANNOTATIONS: json.dumps(recording.annotations_in(k * n, n))}
    window += count


def _train_powers(builder):
  """Linear power of every train example: stored, or the STFT of stored IQ windows."""
  _, tfds = import_tf()
  features = builder.info.features
  if FEATURE in features:
    for batch in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False).batch(256)):
      yield batch[FEATURE]
    return
  spec = spec_for(*builder.info.metadata["shape"][:2])
  for example in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)):
    yield power_spectrogram(example[IQ], spec)


def write_train_stats(builder) -> dict:
  """Computes log-power statistics over the whole train split and writes them to stats.json."""
  stats = compute_stats(_train_powers(builder))
  stats.update(split="train", num_examples=builder.info.splits["train"].num_examples)
  write_stats(os.path.join(builder.data_dir, STATS_FILENAME), stats)
  return stats


def readable(builder, items, read, error_type, source: str, split: str, what: str):
  """Yields (item, read(item)) for the files of `split`. A file whose `read` raises
  `error_type` stops the build, or with builder.skip_bad is left out and its error appended to
  builder.skipped; a split left with no file at all is an error here, not where it is read."""
  done = 0
  for item in items:
    try:
      result = read(item)
    except error_type as error:
      if not builder.skip_bad:
        raise
      builder.skipped.append(str(error))
      continue
    done += 1
    yield item, result
  if not done:
    raise ValueError(f"{source}: every {what} of the {split} split is unreadable "
                     f"({len(items)} skipped); fix them, or reshuffle with another --seed.")


def build(data_dir: str, *, num_examples: int, shape, seed: int, generator: str = "synthetic",
          num_eval_examples: int | None = None, capture: dict | None = None) -> str:
  """Builds a generated radio_pretrain under `data_dir` (parameters as in `build_params`); returns
  its directory.

  Re-running with the same parameters reuses the dataset (and writes stats.json if a previous run
  died before it); different parameters in the same data_dir are an error, not an overwrite.
  """
  return _prepare(data_dir, build_params(num_examples=num_examples, shape=shape, seed=seed,
                                         generator=generator, num_eval_examples=num_eval_examples,
                                         capture=capture))


def _recording_paths(pattern: str) -> list[str]:
  """The recordings matching `pattern`, sorted: .npy files and SigMF recordings, each once
  (named by its .sigmf-meta) whether the pattern matched its .sigmf-meta, .sigmf-data or both."""
  paths = set()
  for path in glob.glob(os.path.expanduser(pattern), recursive=True):
    if path.endswith(".sigmf-data"):
      path = path[:-len(".sigmf-data")] + ".sigmf-meta"
    if path.endswith((".sigmf-meta", ".npy")):
      paths.add(path)
  return sorted(paths)


def recordings_params(pattern: str, *, shape, sample_rate: float | None = None,
                      window_seconds: float | None = None, skip_bad: bool = False):
  """(params, skipped problems) of a radio_pretrain made of the recordings matching `pattern`.

  Every file is opened here (headers and metadata only: data is memory-mapped), so a bad one fails
  the build before anything is written (or, with skip_bad, is left out and reported); all must
  share one sample rate (windows have one length). NaN or infinite samples are found as windows
  are read, failing the build; with skip_bad every window is read here first, so that a file
  holding one is left out and reported like any other bad file.
  """
  if len(shape) != 3 or shape[2] != 1:
    raise ValueError(f"recordings give 1-channel spectrograms; shape={tuple(shape)}.")
  paths = _recording_paths(pattern)
  if not paths:
    raise ValueError(f"--recordings={pattern!r} matches no SigMF (.sigmf-meta / .sigmf-data) or "
                     ".npy file.")
  files, skipped, rate = [], [], None
  for path in paths:
    try:
      recording = rec.read_recording(path, sample_rate)
      if rate is not None and recording.sample_rate != rate:
        raise rec.RecordingError(f"{path}: sample rate {recording.sample_rate:g} differs from the "
                                 f"{rate:g} of {files[0][0]}; build one dataset per rate.")
      n = rec.window_samples(recording, shape, window_seconds)
      if skip_bad:
        rec.check_finite(recording, n)
      count = len(recording.iq) // n
    except rec.RecordingError as error:
      if not skip_bad:
        raise
      skipped.append(str(error))
      continue
    rate = recording.sample_rate
    files.append([os.path.abspath(path), count])
  if sum(count for _, count in files) < 10:
    raise ValueError(f"--recordings={pattern!r} gives {sum(c for _, c in files)} windows; at least "
                     "10 are needed to fill train, validation and test.")
  seconds = window_seconds or rec.DEFAULT.frame_seconds
  params = {"files": files, "shape": [int(d) for d in shape], "sample_rate": rate,
            "window_seconds": seconds, "window_samples": int(round(seconds * rate))}
  return params, skipped


def build_from_recordings(data_dir: str, pattern: str, *, shape, sample_rate: float | None = None,
                          window_seconds: float | None = None, skip_bad: bool = False,
                          generated: dict | None = None):
  """Builds radio_pretrain from recordings (see `recordings_params`), plus generated scenes if
  `generated` holds `build_params` arguments (num_examples, seed, generator, ...); returns
  (version directory, skipped problems)."""
  params, skipped = recordings_params(pattern, shape=shape, sample_rate=sample_rate,
                                      window_seconds=window_seconds, skip_bad=skip_bad)
  if generated:
    params.update(build_params(shape=shape, **generated))
  return _prepare(data_dir, params), skipped


def _prepare(data_dir: str, params: dict) -> str:
  """Builds (or reuses, if built with the same params) radio_pretrain with `params`."""
  return prepare_builder(builder_class()(params=params, data_dir=data_dir), params)


def prepare_builder(builder, params: dict) -> str:
  """Runs a locally generated builder (any of ours) offline; returns its version directory.

  A dataset already built with the same `params` is reused (and gets stats.json if a previous run
  died before writing it); other params in the same directory are an error, never an overwrite.
  """
  _, tfds = import_tf()
  version_dir = os.fspath(builder.data_dir)
  stored_path = os.path.join(version_dir, "metadata.json")
  if os.path.exists(stored_path):
    with open(stored_path) as f:
      stored = json.load(f)
    if stored != params:
      raise ValueError(f"{version_dir} already holds {builder.name} built with {stored}, not "
                       f"{params}; use another --data_dir or delete that directory.")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  if not os.path.exists(os.path.join(version_dir, STATS_FILENAME)):
    write_train_stats(builder)
  return version_dir
