"""`audio`: a tensorflow-datasets builder of log-mel spectrograms of a folder of audio files.

Every .wav / .flac file below `audio_dir` (any depth, sorted; hidden files and folders, such as
macOS's '._NAME.wav' companions, left out) gives one example per clip
(msm_jax.data.audio.files: clips of clip_seconds, default frames x 10 ms, each one's mel power with
its frames cut or padded to the requested count; msm_jax.data.audio.frontend). When every file
sits below a sub-folder of audio_dir and there are at least two, those sub-folders are the
classes (sorted names; 'label' is a ClassLabel); otherwise the dataset is unlabelled. Files, never
clips, are split, so the clips of one recording never straddle train and test: per class, the
sorted files are shuffled with the seed, a tenth (at least one) each going to validation and test
(generators.shuffled_splits); a class needs at least 3 files.

Features: 'spectrogram' float32 mel power (frames, mels, C), 'label' when labelled, 'source' (the
file, relative to audio_dir) and 'start_seconds' (the clip's start in it). Parameters (the front
end, the files of each split) live in metadata.json, the train split's log-power statistics in
stats.json (DATA_DIR/audio/1.0.0/). A bad file stops the build with an AudioFileError naming it,
or with skip_bad is left out and listed. TensorFlow is imported lazily (`builder_class()`).
"""
import dataclasses
import functools
import os

import numpy as np

from msm_jax.data.audio.files import AUDIO_EXTENSIONS, AudioFileError, file_spectrograms
from msm_jax.data.audio.frontend import AudioFrontend
from msm_jax.data.generators import SPLITS, shuffled_splits
from msm_jax.data.radio_pretrain import prepare_builder, readable, write_train_stats
from msm_jax.data.tfds_pipeline import FEATURE, LABEL, import_tf

NAME = "audio"
# MaskSpec's input: 128 mel bins, 1024 frames of 10 ms (10.24 s, AudioSet's 10 s clips padded
# as in AST), a whole number of 16 x 16 patches. launch.make_dataset --height/--width change it.
DEFAULT_SHAPE = (1024, 128, 1)
SOURCE, START_SECONDS = "source", "start_seconds"


def audio_files(audio_dir: str) -> list[str]:
  """The audio files below `audio_dir`, relative to it ('/'-separated), sorted."""
  if not os.path.isdir(audio_dir):
    raise ValueError(f"--audio_dir={audio_dir!r} is not a folder.")
  paths = []
  for folder, folders, names in os.walk(audio_dir):
    folders[:] = [f for f in folders if not f.startswith(".")]  # os.walk descends into these
    paths += [os.path.relpath(os.path.join(folder, name), audio_dir).replace(os.sep, "/")
              for name in names if name.lower().endswith(AUDIO_EXTENSIONS)
              and not name.startswith(".")]
  if not paths:
    raise ValueError(f"--audio_dir={audio_dir!r} holds no {' or '.join(AUDIO_EXTENSIONS)} file.")
  return sorted(paths)


def folder_classes(paths) -> tuple[str, ...]:
  """Class names: the top-level sub-folders when every file sits below one and there are at least
  two of them; else () (unlabelled)."""
  tops = {path.split("/")[0] if "/" in path else None for path in paths}
  return () if None in tops or len(tops) < 2 else tuple(sorted(tops))


def build_params(*, audio_dir: str, shape, sample_rate: float | None = None,
                 clip_seconds: float | None = None, seed: int = 0) -> dict:
  """The parameters defining an audio dataset (JSON-ready, as stored in metadata.json)."""
  given = {"sample_rate": sample_rate, "clip_seconds": clip_seconds}
  frontend = AudioFrontend.for_shape(shape, **{k: v for k, v in given.items() if v is not None})
  paths = audio_files(audio_dir)
  classes = folder_classes(paths)
  groups = ({label: [p for p in paths if p.split("/")[0] == name]
             for label, name in enumerate(classes)} if classes else {-1: paths})
  files = {split: [] for split in SPLITS}
  for label, group in groups.items():
    if len(group) < 3:
      what = f"class {classes[label]!r}" if classes else audio_dir
      raise ValueError(f"{what} has {len(group)} audio file(s); at least 3 are needed to fill "
                       "train, validation and test.")
    for split, indices in shuffled_splits(len(group), [seed, max(label, 0)]).items():
      files[split] += [[group[i], label] for i in indices]
  return {"audio_dir": os.path.abspath(audio_dir), "classes": list(classes), "seed": int(seed),
          "frontend": dataclasses.asdict(frontend),
          "files": {split: sorted(files[split]) for split in SPLITS}}


@functools.cache
def builder_class():
  """The Audio builder class (registered with tfds as 'audio' on first call)."""
  _, tfds = import_tf()

  class Audio(tfds.core.GeneratorBasedBuilder):
    """Log-mel spectrograms of audio clips, labelled by folder or unlabelled."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Log-mel clips of a folder of WAV / FLAC files."}
    code_path = None  # as radio_pretrain: no checksums file, nothing is downloaded

    def __init__(self, *, params: dict, skip_bad: bool = False, **kwargs):
      self.params, self.skip_bad, self.skipped = params, skip_bad, []
      super().__init__(**kwargs)  # after params: the base constructor calls _info()

    def _info(self):
      shape = AudioFrontend(**self.params["frontend"]).shape
      features = {FEATURE: tfds.features.Tensor(shape=shape, dtype=np.float32,
                                                encoding=tfds.features.Encoding.BYTES),
                  SOURCE: tfds.features.Text(),
                  # float32: tf.train.Example stores floats so (~0.2 ms at an hour in).
                  START_SECONDS: tfds.features.Scalar(np.float32)}
      if self.params["classes"]:
        features[LABEL] = tfds.features.ClassLabel(names=self.params["classes"])
      return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                            metadata=tfds.core.MetadataDict(self.params))

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split):
      frontend = AudioFrontend(**self.params["frontend"])
      audio_dir = self.params["audio_dir"]
      read = lambda file: file_spectrograms(os.path.join(audio_dir, file[0]), frontend)
      files = readable(self, self.params["files"][split], read, AudioFileError, audio_dir, split,
                       "file")
      for (path, label), (powers, starts) in files:
        for clip, (power, start) in enumerate(zip(powers, starts)):
          example = {FEATURE: power, SOURCE: path, START_SECONDS: np.float32(start)}
          yield f"{path}#{clip}", ({**example, LABEL: label} if label >= 0 else example)

    def _post_download_and_prepare_hook(self):
      write_train_stats(self)

  return Audio


def build(data_dir: str, *, audio_dir: str, shape=DEFAULT_SHAPE, sample_rate: float | None = None,
          clip_seconds: float | None = None, seed: int = 0,
          skip_bad: bool = False) -> tuple[str, list[str]]:
  """Builds the audio dataset of `audio_dir` under `data_dir`; returns (version directory,
  skipped-file errors). Same parameters reuse the dataset; different ones (other files too) in
  the same data_dir are an error."""
  params = build_params(audio_dir=audio_dir, shape=shape, sample_rate=sample_rate,
                        clip_seconds=clip_seconds, seed=seed)
  builder = builder_class()(params=params, skip_bad=skip_bad, data_dir=data_dir)
  return prepare_builder(builder, params), builder.skipped
