r"""Time the compiled MSM train step on synthetic arrays and print one JSON line.

  python -m launch.benchmark --config=configs/pretrain.py:vit_s --batch_size=16 --steps=8

The compute dtype is the config's (default 'auto': float32 on CPU, bfloat16 on accelerators);
the JSON's `dtype` names the one that ran.

step_flops is the analytic matrix-product count (forward + backward); peak_flops_per_sec is a
matrix product in the same dtype measured on the same devices (the median of samples taken
before, between and after up to 4 stretches of timed steps); fraction_of_peak is their ratio.
seconds_per_step_by_stretch and fraction_of_peak_by_stretch give each stretch alone, against the
samples on either side of it: on a shared machine whose speed drifts, their spread shows how far
the whole-run figures can be trusted.
"""
import json

from absl import flags
from ml_collections import config_flags

from launch import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/pretrain.py:vit_s.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_integer("steps", 8, "Timed steps after one compile call (a multiple of the steps "
                     "per call; config.steps_per_call=0 picks a divisor of it).")
flags.DEFINE_integer("peak_size", 0, "Matrix size for the peak measurement (0: 2048 CPU, 8192 else).")
flags.DEFINE_bool("profile", False, "CPU only: add time_by_module_ms, a profiler trace of 2 steps "
                  "in ms per step by encoder/decoder module (forward and backward apart).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  from msm_jax.training.benchmark import benchmark
  print(json.dumps(benchmark(FLAGS.config, FLAGS.batch_size, FLAGS.steps, FLAGS.peak_size,
                             FLAGS.profile)))


if __name__ == "__main__":
  cli.run(main)
