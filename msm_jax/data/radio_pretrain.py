"""`radio_pretrain`: a tensorflow-datasets builder of unlabelled power spectrograms, built locally.

Examples are {'spectrogram': float32 linear power (Nt, Nf, C)} in train/validation/test splits,
produced by a per-example generator registered in msm_jax.data.generators (default 'synthetic';
labels, if any, are dropped). Example i of split s is generator(default_rng([seed, s, i]), shape, s),
so a dataset is fully determined by its parameters, which are stored in its metadata.json. After
building, normalisation statistics of the train split are written to stats.json in the same
version directory (DATA_DIR/radio_pretrain/1.0.0/), where TfdsSource reads them.

tensorflow_datasets is imported lazily: the builder class is created by `builder_class()`.
"""
import functools
import json
import os

import numpy as np

from msm_jax.data.normalize import STATS_FILENAME, compute_stats, write_stats
from msm_jax.data.generators import get_generator
from msm_jax.data.tfds_pipeline import FEATURE, import_tf

NAME = "radio_pretrain"
DEFAULT_SHAPE = (224, 224, 1)
# The split's id enters every example's seed, so splits never share an example.
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


def build_params(*, num_examples: int, shape, seed: int, generator: str = "synthetic",
                 num_eval_examples: int | None = None) -> dict:
  """The parameters defining a radio_pretrain dataset (JSON-ready, as stored in metadata.json)."""
  if num_examples < 1 or len(shape) != 3 or min(shape) < 1 or seed < 0:
    raise ValueError(f"radio_pretrain needs num_examples >= 1, a shape of 3 positive ints and "
                     f"seed >= 0; got num_examples={num_examples}, shape={shape}, seed={seed}.")
  get_generator(generator)  # fail now, not after the builder is half set up
  return {"num_examples": int(num_examples), "shape": [int(d) for d in shape], "seed": int(seed),
          "generator": generator,
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
      return self.dataset_info_from_configs(
          features=tfds.features.FeaturesDict(
              {FEATURE: tfds.features.Tensor(shape=tuple(self.params["shape"]), dtype=np.float32,
                                         encoding=tfds.features.Encoding.BYTES)}),
          metadata=tfds.core.MetadataDict(self.params))

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      return {split: self._generate_examples(split) for split in SPLIT_IDS}

    def _generate_examples(self, split):
      p = self.params
      generate, shape = get_generator(p["generator"]), tuple(p["shape"])
      count = p["num_examples"] if split == "train" else p["num_eval_examples"]
      for index in range(count):
        rng = np.random.default_rng([p["seed"], SPLIT_IDS[split], index])
        yield index, {FEATURE: generate(rng, shape, split)[FEATURE]}

    def _post_download_and_prepare_hook(self):
      write_train_stats(self)

  return RadioPretrain


def write_train_stats(builder) -> dict:
  """Computes log-power statistics over the whole train split and writes them to stats.json."""
  _, tfds = import_tf()
  train = builder.as_dataset(split="train", shuffle_files=False).batch(256)
  stats = compute_stats(batch[FEATURE] for batch in tfds.as_numpy(train))
  stats.update(split="train", num_examples=builder.info.splits["train"].num_examples)
  write_stats(os.path.join(builder.data_dir, STATS_FILENAME), stats)
  return stats


def build(data_dir: str, *, num_examples: int, shape, seed: int, generator: str = "synthetic",
          num_eval_examples: int | None = None) -> str:
  """Builds radio_pretrain under `data_dir` (parameters as in `build_params`); returns its directory.

  Re-running with the same parameters reuses the dataset (and writes stats.json if a previous run
  died before it); different parameters in the same data_dir are an error, not an overwrite.
  """
  _, tfds = import_tf()
  params = build_params(num_examples=num_examples, shape=shape, seed=seed, generator=generator,
                        num_eval_examples=num_eval_examples)
  builder = builder_class()(params=params, data_dir=data_dir)
  version_dir = os.fspath(builder.data_dir)
  stored_path = os.path.join(version_dir, "metadata.json")
  if os.path.exists(stored_path):
    with open(stored_path) as f:
      stored = json.load(f)
    if stored != params:
      raise ValueError(f"{version_dir} already holds radio_pretrain built with {stored}, not {params}; "
                       "use another --data_dir or delete that directory.")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  if not os.path.exists(os.path.join(version_dir, STATS_FILENAME)):
    write_train_stats(builder)
  return version_dir
