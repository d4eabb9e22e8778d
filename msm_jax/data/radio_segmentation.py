"""`radio_segmentation`: spectrograms with per-pixel labels (noise / LTE / NR), built locally.

Examples are {'spectrogram': float32 linear power (Nt, Nf, C), 'label': uint8 class ids (Nt, Nf)}
with the class names in metadata['classes'], in train/validation/test splits, made either by a
labelled pixel generator (default 'lte_nr'; example i of split s is
generator(default_rng([seed, s, i]), shape, s, **capture), computed in worker processes, with the
capture settings in metadata['capture']) or from a folder of at least 3 MathWorks-style frames
(msm_jax.data.radio.mathworks; frames shuffled with the seed and split 80/10/10, validation and
test at least one each; a split left without a readable frame is an error). Parameters live in
metadata.json; stats.json holds the train split's log-power statistics, as for radio_pretrain.
"""
import functools
import os

import numpy as np

from msm_jax.data import parallel
from msm_jax.data.generators import SPLIT_IDS, get_generator, shuffled_splits
from msm_jax.data.radio import mathworks
from msm_jax.data.radio.generators import LTE_NR_CLASSES
from msm_jax.data.radio.recordings import RecordingError
from msm_jax.data.radio_pretrain import (generator_params, prepare_builder, readable,
                                         write_train_stats)
from msm_jax.data.tfds_pipeline import FEATURE, LABEL, import_tf

NAME = "radio_segmentation"
DEFAULT_SHAPE = (256, 256, 1)


def build_params(*, num_examples: int, shape, seed: int, generator: str | None = None,
                 num_eval_examples: int | None = None, folder: str | None = None,
                 capture: dict | None = None) -> dict:
  """The parameters defining a radio_segmentation dataset (as stored in metadata.json): generated
  by `generator` (default 'lte_nr', IQ captures per `capture`) or read from `folder`."""
  if num_examples < 1 or len(shape) != 3 or min(shape) < 1 or seed < 0:
    raise ValueError(f"radio_segmentation needs num_examples >= 1, a shape of 3 positive ints and "
                     f"seed >= 0; got num_examples={num_examples}, shape={shape}, seed={seed}.")
  params = {"shape": [int(d) for d in shape], "seed": int(seed)}
  if folder:
    if shape[2] != 1:
      raise ValueError(f"MathWorks-style frames have 1 channel, not shape={tuple(shape)}.")
    if generator or capture:
      raise ValueError(f"frames from {folder} are read, not generated: a generator ({generator}) "
                       f"or capture settings ({capture}) do not apply.")
    return dict(params, folder=os.path.abspath(folder), classes=list(LTE_NR_CLASSES))
  generator = generator or "lte_nr"
  labelled = get_generator(generator)
  if labelled.label != "pixel":
    raise ValueError(f"radio_segmentation needs a per-pixel labelled generator; {generator!r} has "
                     f"label={labelled.label!r}.")
  return dict(params, **generator_params(generator, shape, capture),
              classes=list(labelled.classes), num_examples=int(num_examples),
              num_eval_examples=int(num_eval_examples or max(1, num_examples // 10)))


def folder_splits(folder: str, seed: int) -> dict:
  """{split: [(spectrogram, label) paths]}: the frames shuffled by `seed`, 80/10/10."""
  frames = mathworks.find_frames(folder)
  if len(frames) < 3:
    raise ValueError(f"{folder}: {len(frames)} frame(s); at least 3 are needed to fill train, "
                         "validation and test.")
  return {split: [frames[i] for i in indices]
          for split, indices in shuffled_splits(len(frames), seed).items()}


@functools.cache
def builder_class():
  """The RadioSegmentation builder class (registered with tfds on first call)."""
  _, tfds = import_tf()

  class RadioSegmentation(tfds.core.GeneratorBasedBuilder):
    """Radio spectrograms with per-pixel class labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Generated or MathWorks-style frames, parameters in metadata.json."}
    code_path = None  # as radio_pretrain: no checksums file, nothing is downloaded

    def __init__(self, *, params: dict, skip_bad: bool = False, **kwargs):
      self.params, self.skip_bad, self.skipped = params, skip_bad, []
      super().__init__(**kwargs)

    def _info(self):
      shape = tuple(self.params["shape"])
      return self.dataset_info_from_configs(
          features=tfds.features.FeaturesDict({
              FEATURE: tfds.features.Tensor(shape=shape, dtype=np.float32,
                                            encoding=tfds.features.Encoding.BYTES),
              LABEL: tfds.features.Tensor(shape=shape[:2], dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES)}),
          metadata=tfds.core.MetadataDict(self.params))

    def _split_generators(self, dl_manager):
      del dl_manager
      if "folder" in self.params:
        splits = folder_splits(self.params["folder"], self.params["seed"])
        return {split: self._generate_examples(split, frames) for split, frames in splits.items()}
      return {split: self._generate_examples(split) for split in SPLIT_IDS}

    def _generate_examples(self, split, frames=None):
      if frames is not None:
        yield from self._folder_examples(split, frames)
        return
      for index, example in parallel.split_examples(self.params, split):
        yield index, {FEATURE: example[FEATURE], LABEL: example[LABEL].astype(np.uint8)}

    def _folder_examples(self, split, frames):
      read = lambda frame: mathworks.read_frame(*frame, self.params["shape"],
                                                tuple(self.params["classes"]))
      examples = readable(self, list(enumerate(frames)), lambda item: read(item[1]),
                          RecordingError, self.params["folder"], split, "frame")
      for (index, _), (power, ids) in examples:
        yield index, {FEATURE: power, LABEL: ids}

    def _post_download_and_prepare_hook(self):
      write_train_stats(self)

  return RadioSegmentation


def build(data_dir: str, *, num_examples: int, shape, seed: int, generator: str | None = None,
          num_eval_examples: int | None = None, folder: str | None = None,
          skip_bad: bool = False, capture: dict | None = None) -> tuple[str, list[str]]:
  """Builds radio_segmentation under `data_dir`; returns (version directory, skipped-file errors).

  Same parameters reuse the dataset; different ones in the same data_dir are an error.
  """
  params = build_params(num_examples=num_examples, shape=shape, seed=seed, generator=generator,
                        num_eval_examples=num_eval_examples, folder=folder, capture=capture)
  builder = builder_class()(params=params, skip_bad=skip_bad, data_dir=data_dir)
  return prepare_builder(builder, params), builder.skipped
