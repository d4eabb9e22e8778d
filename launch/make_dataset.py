"""Builds a pretraining dataset locally (offline) for `config.data.source = 'tfds'`.

  python -m launch.make_dataset --dataset=radio_pretrain --data_dir=DIR \
      [--num_examples=N] [--height=Nt --width=Nf --channels=C] [--seed=S]

Then train with config.data.data_dir=DIR, config.data.name=<dataset> and
config.input_shape=(Nt, Nf, C). Datasets are looked up by name in DATASETS.
"""
import json
import os

from absl import app, flags

from msm_jax.data import radio_pretrain
from msm_jax.data.normalize import STATS_FILENAME, read_stats


def _build_radio_pretrain(flag_values) -> str:
  return radio_pretrain.build(
      flag_values.data_dir, num_examples=flag_values.num_examples, seed=flag_values.seed,
      shape=(flag_values.height, flag_values.width, flag_values.channels))


# name -> function(flag values) that builds the dataset and returns its version directory.
DATASETS = {radio_pretrain.NAME: _build_radio_pretrain}

_DATASET = flags.DEFINE_enum("dataset", radio_pretrain.NAME, sorted(DATASETS), "Dataset to build.")
flags.DEFINE_string("data_dir", None, "Directory to build into (config.data.data_dir).", required=True)
flags.DEFINE_integer("num_examples", 10_000, "Train examples (validation and test get a tenth each).",
                     lower_bound=1)
flags.DEFINE_integer("height", radio_pretrain.DEFAULT_SHAPE[0], "Time frames Nt.", lower_bound=1)
flags.DEFINE_integer("width", radio_pretrain.DEFAULT_SHAPE[1], "Frequency bins Nf.", lower_bound=1)
flags.DEFINE_integer("channels", radio_pretrain.DEFAULT_SHAPE[2], "Channels C.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed: the dataset is a pure function of its flags.", lower_bound=0)


def main(argv):
  del argv
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  tfds.display_progress_bar(True)  # tfds reports progress per split as it generates and shuffles
  version_dir = DATASETS[_DATASET.value](flags.FLAGS)
  stats = read_stats(os.path.join(version_dir, STATS_FILENAME))
  print(f"Built {_DATASET.value} in {version_dir}")
  print(f"Normalisation statistics ({STATS_FILENAME}): {json.dumps(stats, sort_keys=True)}")


if __name__ == "__main__":
  app.run(main)
