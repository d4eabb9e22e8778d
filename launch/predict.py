r"""Run a finetuned model on your own recordings.

  # LTE/NR segmentation of a SigMF or .npy IQ recording, window by window:
  python -m launch.predict --workdir=/tmp/seg --input=capture.sigmf-meta --output=/tmp/capture
  # -> /tmp/capture.npy (uint8 class map per window), /tmp/capture.png, /tmp/capture.json

  # Activity probabilities of a CSI file (NTU-Fi .mat, UT-HAR array, Widar3.0 .dat):
  python -m launch.predict --workdir=/tmp/har --input=walk.mat --output=/tmp/walk
  # -> /tmp/walk.npy (probabilities), /tmp/walk.json

  # Sound class probabilities of a WAV / FLAC file, clip by clip (an audio_* finetuning):
  python -m launch.predict --workdir=/tmp/snd --input=dog.wav --output=/tmp/dog
  # -> /tmp/dog.npy (probabilities per clip), /tmp/dog.json (with each clip's start)
"""
import json
import os

from absl import flags

from launch import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A finetuning workdir (launch.finetune).", required=True)
flags.DEFINE_string("input", None, "Recording: .sigmf-meta/.sigmf-data/.npy IQ, CSI file, or "
                    ".wav/.flac audio.", required=True)
flags.DEFINE_string("output", None, "Output path prefix (.npy, .json and .png are added).",
                    required=True)
flags.DEFINE_float("sample_rate", None, "Sample rate in Hz of a .npy IQ file without sidecar.")
flags.DEFINE_float("window_ms", None, "IQ window per spectrogram in ms (default: the scenes').")
flags.DEFINE_integer("step", None, "Checkpoint step of the workdir (default: the latest).")


def main(argv):
  del argv
  import numpy as np
  from msm_jax.finetune.predict import load_finetuned, recording_inputs
  from msm_jax.metrics.logger import quiet_library_logs
  quiet_library_logs()
  model = load_finetuned(FLAGS.workdir, FLAGS.step)
  window = FLAGS.window_ms / 1e3 if FLAGS.window_ms else None
  # The readers name the file and the problem; launch/cli.py prints it as one line.
  power, items = recording_inputs(model, FLAGS.input, FLAGS.sample_rate, window)
  probabilities = model.probabilities(power)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  classes = list(model.classes)
  if model.config.task == "segmentation":
    maps = probabilities.argmax(-1).astype(np.uint8)
    np.save(FLAGS.output + ".npy", maps)
    for item, labels in zip(items, maps):
      item["class_fraction"] = {c: float(np.mean(labels == i)) for i, c in enumerate(classes)}
    from msm_jax.data.normalize import log_power_db
    from msm_jax.metrics.figures import save_segmentation_figure
    save_segmentation_figure(FLAGS.output + ".png", log_power_db(power[..., 0]), None, maps,
                             classes, title=os.path.basename(FLAGS.input))
  else:
    np.save(FLAGS.output + ".npy", probabilities.astype(np.float32))
    for item, p in zip(items, probabilities):
      item["probabilities"] = {c: float(v) for c, v in zip(classes, p)}
      item["prediction"] = classes[int(p.argmax())]
  with open(FLAGS.output + ".json", "w") as f:
    json.dump({"input": FLAGS.input, "workdir": FLAGS.workdir, "classes": classes,
               "items": items}, f, indent=2, default=str)
  written = ".npy, .json" + (", .png" if model.config.task == "segmentation" else "")
  print(f"{len(items)} input(s) of {FLAGS.input} -> {FLAGS.output}{{{written}}}")


if __name__ == "__main__":
  cli.run(main)
