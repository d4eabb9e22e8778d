"""Builds a dataset locally (offline) for `config.data.source = 'tfds'`, with a progress bar.

  python -m launch.make_dataset --dataset=radio_pretrain --data_dir=DIR \
      [--num_examples=N [--num_eval_examples=M]] [--height=Nt --width=Nf --channels=C] \
      [--seed=S] [--generator=radio_scene] [--capture_rate=61.44e6 --frame_seconds=0.016]
  python -m launch.make_dataset --dataset=radio_pretrain --data_dir=DIR \
      --recordings='captures/*.sigmf-meta' [--sample_rate=HZ] [--window_seconds=0.016] \
      [--skip_bad] [--num_examples=N [--generator=...]]  # + N generated scenes if N is given
  python -m launch.make_dataset --dataset=csi_har --data_dir=DIR [--source=ntu_fi:PATH] \
      [--held_out='room=2'] [--csi_classes=ut_har] [--skip_bad]  # WiFi CSI activities
  python -m launch.make_dataset --dataset=radio_segmentation --data_dir=DIR \
      [--height=256 --width=256] [--capture_rate=HZ --frame_seconds=S] \
      [--frames=FOLDER [--skip_bad]]  # LTE/NR pixel labels, generated (lte_nr) or read
  python -m launch.make_dataset --dataset=audio --data_dir=DIR --audio_dir=FOLDER \
      [--height=FRAMES --width=MELS --channels=C] [--sample_rate=16000] [--clip_seconds=S] \
      [--seed=S] [--skip_bad]  # log-mel clips of .wav/.flac files, classes = sub-folders

Then train with config.data.data_dir=DIR, config.data.name=<dataset> and
config.input_shape=(Nt, Nf, C). Datasets are looked up by name in DATASETS.
"""
import json
import os

from absl import app, flags

from launch import cli

from msm_jax.data import radio_pretrain, radio_segmentation
from msm_jax.data.audio import dataset as audio
from msm_jax.data.csi import csi_har
from msm_jax.data.generators import GENERATORS
from msm_jax.data.normalize import STATS_FILENAME, read_stats

# Flags that describe generated radio scenes (the datasets that take them: _RADIO).
_GENERATION_FLAGS = ("generator", "capture_rate", "frame_seconds")


def _capture(flag_values) -> dict | None:
  """The capture settings given as flags (msm_jax.data.radio.scene.capture_config), or None."""
  capture = {name: value for name, value in (("sample_rate", flag_values.capture_rate),
                                             ("frame_seconds", flag_values.frame_seconds))
             if value is not None}
  return capture or None


def _build_radio_pretrain(flag_values) -> str:
  shape = (flag_values.height, flag_values.width, flag_values.channels)
  generated = {"num_examples": flag_values.num_examples, "seed": flag_values.seed,
               "num_eval_examples": flag_values.num_eval_examples,
               "generator": flag_values.generator or "radio_scene",
               "capture": _capture(flag_values)}
  if flag_values.recordings:
    add = flag_values["num_examples"].present  # that many generated scenes join the windows
    version_dir, skipped = radio_pretrain.build_from_recordings(
        flag_values.data_dir, flag_values.recordings, shape=shape,
        sample_rate=flag_values.sample_rate, window_seconds=flag_values.window_seconds,
        skip_bad=flag_values.skip_bad, generated=generated if add else None)
    _report_skipped(skipped)
    return version_dir
  return radio_pretrain.build(flag_values.data_dir, shape=shape, **generated)


def _shape(flag_values, default) -> tuple[int, int, int]:
  """--height/--width/--channels, each left unset taking the dataset's own `default`."""
  return tuple(flag_values[name].value if flag_values[name].present else value
               for name, value in zip(("height", "width", "channels"), default))


def _build_csi_har(flag_values) -> str:
  version_dir, skipped = csi_har.build(
      flag_values.data_dir,
      shape=_shape(flag_values, csi_har.default_shape(flag_values.source, flag_values.csi_layout)),
      source=flag_values.source, num_examples=flag_values.num_examples, seed=flag_values.seed,
      num_eval_examples=flag_values.num_eval_examples, classes=flag_values.csi_classes,
      layout=flag_values.csi_layout, held_out=flag_values.held_out,
      skip_bad=flag_values.skip_bad)
  _report_skipped(skipped)
  return version_dir


def _build_radio_segmentation(flag_values) -> str:
  version_dir, skipped = radio_segmentation.build(
      flag_values.data_dir, num_examples=flag_values.num_examples,
      shape=_shape(flag_values, radio_segmentation.DEFAULT_SHAPE),
      seed=flag_values.seed, num_eval_examples=flag_values.num_eval_examples,
      folder=flag_values.frames, skip_bad=flag_values.skip_bad, generator=flag_values.generator,
      capture=_capture(flag_values))
  _report_skipped(skipped)
  return version_dir


def _build_audio(flag_values) -> str:
  version_dir, skipped = audio.build(
      flag_values.data_dir, audio_dir=flag_values.audio_dir,
      shape=_shape(flag_values, audio.DEFAULT_SHAPE), sample_rate=flag_values.sample_rate,
      clip_seconds=flag_values.clip_seconds, seed=flag_values.seed, skip_bad=flag_values.skip_bad)
  _report_skipped(skipped)
  with open(os.path.join(version_dir, "metadata.json")) as f:
    classes = json.load(f)["classes"]
  print(f"Classes (the sub-folders of --audio_dir): {', '.join(classes)}" if classes else
        "Unlabelled: the files do not sit in one sub-folder per class (at least two).")
  return version_dir


def _report_skipped(skipped):
  if skipped:
    print(f"Skipped {len(skipped)} bad file(s) (--skip_bad):")
    print("\n".join(f"  {problem}" for problem in skipped))


# name -> function(flag values) that builds the dataset and returns its version directory.
DATASETS = {radio_pretrain.NAME: _build_radio_pretrain, csi_har.NAME: _build_csi_har,
            radio_segmentation.NAME: _build_radio_segmentation, audio.NAME: _build_audio}
_RADIO = (radio_pretrain.NAME, radio_segmentation.NAME)

_DATASET = flags.DEFINE_enum("dataset", radio_pretrain.NAME, sorted(DATASETS), "Dataset to build.")
flags.DEFINE_string("data_dir", None, "Directory to build into (config.data.data_dir).",
                    required=True)
flags.DEFINE_integer("num_examples", 10_000, "Train examples (validation and test get "
                     "--num_eval_examples each); with --recordings, generated scenes added to the "
                     "windows.",
                     lower_bound=1)
flags.DEFINE_integer("num_eval_examples", None, "Generated validation and test examples, each "
                     "(default a tenth of --num_examples).", lower_bound=1)
# The defaults shown are radio_pretrain's; other datasets default to their own shapes (_shape).
flags.DEFINE_integer("height", radio_pretrain.DEFAULT_SHAPE[0], "Time frames Nt; csi_har: "
                     "subcarriers, default 112 for NTU-Fi (and the atheros40 simulator), 30 for "
                     "UT-HAR and Widar3.0 (Intel 5300, and the intel20 simulator).", lower_bound=1)
flags.DEFINE_integer("width", radio_pretrain.DEFAULT_SHAPE[1], "Frequency bins Nf; csi_har: time "
                     "steps, default 496, 240 for UT-HAR (250 per recording).", lower_bound=1)
flags.DEFINE_integer("channels", radio_pretrain.DEFAULT_SHAPE[2], "Channels C; csi_har: antennas, "
                     "default 3.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed: the dataset is a pure function of its flags.", lower_bound=0)
flags.DEFINE_string("source", "simulator", "csi_har: 'simulator', or real files 'ntu_fi:PATH', "
                    "'ut_har:PATH' or 'widar:PATH'.")
flags.DEFINE_string("csi_classes", "ntu_fi", "csi_har simulator activities: 'ntu_fi', 'ut_har', "
                    "'all' or comma-separated names (msm_jax.data.csi.kinematics.ACTIVITIES).")
flags.DEFINE_string("csi_layout", "atheros40", "csi_har simulator card layout: atheros40 "
                    "(NTU-Fi, 114 subcarriers) or intel20 (Intel 5300, 30 subcarriers).")
flags.DEFINE_enum("generator", None, sorted(GENERATORS), "Scene model of the generated examples "
                  "(msm_jax.data.generators): radio_pretrain default radio_scene (IQ-level LTE, NR "
                  "and other emitters), radio_segmentation default lte_nr (pixel-labelled only).")
flags.DEFINE_float("capture_rate", None, "Generated IQ scenes: capture sample rate in Hz, a "
                   "multiple of 7.68e6 from 30.72e6 to 122.88e6 (default 61.44e6).")
flags.DEFINE_float("frame_seconds", None, "Generated IQ scenes: frame length, 0.01-0.04 s "
                   "(default 0.016).")
flags.DEFINE_string("frames", None, "radio_segmentation: a folder of MathWorks-style frames "
                    "(NAME.mat/.png + NAME_label.png) instead of the lte_nr generator.")
flags.DEFINE_string("recordings", None, "radio_pretrain: glob of SigMF (.sigmf-meta) / .npy IQ "
                    "recordings, cut into windows instead of generating spectrograms.")
flags.DEFINE_float("sample_rate", None, "Sample rate (Hz) of .npy recordings without a NAME.json; "
                   "audio: the rate files are resampled to (default 16000).")
flags.DEFINE_float("window_seconds", None, "Recording window length (default 16 ms, the "
                   "generators' frame).")
flags.DEFINE_string("audio_dir", None, "audio: a folder of .wav / .flac files, one sub-folder "
                    "per class for labels (msm_jax/data/audio/dataset.py).")
flags.DEFINE_float("clip_seconds", None, "audio: seconds of sound per example (default --height "
                   "x the 10 ms hop); its frames are cut or padded to --height.")
flags.DEFINE_bool("skip_bad", False, "Skip unreadable recordings / frames / CSI / audio files, and "
                  "recordings / frames holding NaN or infinite values, reporting each, instead of "
                  "stopping at the first (with --recordings this reads every file once more).")
flags.DEFINE_string("held_out", "subject=6,7", "csi_har simulator domains only validation/test "
                    "see, e.g. 'room=2;position=3,4'; 'none' for one distribution.")


def _check_flags(flag_values):
  """Flag combinations that make no sense, refused before TensorFlow is imported."""
  given = [f"--{name}" for name in _GENERATION_FLAGS if flag_values[name].present]
  if given and flag_values.dataset not in _RADIO:
    raise app.UsageError(f"{' '.join(given)}: only for {' and '.join(_RADIO)}.")
  if given and flag_values.recordings and not flag_values["num_examples"].present:
    raise app.UsageError(f"{' '.join(given)} with --recordings describe generated scenes to add "
                         "to the recordings' windows: give their number too, --num_examples=N.")
  if bool(flag_values.audio_dir) != (flag_values.dataset == audio.NAME):
    raise app.UsageError(f"--dataset={audio.NAME} reads --audio_dir=FOLDER, which only it takes.")
  if flag_values.clip_seconds is not None and flag_values.dataset != audio.NAME:
    raise app.UsageError(f"--clip_seconds: only for --dataset={audio.NAME}.")
  if flag_values["num_examples"].present and flag_values.dataset == audio.NAME:
    raise app.UsageError("--num_examples sizes generated datasets; audio examples are the clips "
                         "of the files in --audio_dir.")
  reads_only = (flag_values.frames or flag_values.source != "simulator" or
                flag_values.dataset == audio.NAME or
                (flag_values.recordings and not flag_values["num_examples"].present))
  if flag_values["num_eval_examples"].present and reads_only:
    raise app.UsageError("--num_eval_examples sizes generated validation/test splits; files that "
                         "are read are split by their own rules (see the dataset's docstring).")


def main(argv):
  del argv
  _check_flags(flags.FLAGS)
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  tfds.display_progress_bar(True)  # tfds reports progress per split as it generates and shuffles
  version_dir = DATASETS[_DATASET.value](flags.FLAGS)
  stats = read_stats(os.path.join(version_dir, STATS_FILENAME))
  print(f"Built {_DATASET.value} in {version_dir}")
  print(f"Normalisation statistics ({STATS_FILENAME}): {json.dumps(stats, sort_keys=True)}")


if __name__ == "__main__":
  cli.run(main)
