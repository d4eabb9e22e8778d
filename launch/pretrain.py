r"""Pretrain a ViT radio foundation model with Masked Spectrogram Modeling.

  python -m launch.pretrain --config=configs/pretrain.py:tiny --workdir=/tmp/msm_tiny

Rerunning with the same --workdir resumes from its latest checkpoint. On a multi-host pod run the
same command on every host with --multihost (calls jax.distributed.initialize()).
"""
from absl import flags
from ml_collections import config_flags

from launch import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/pretrain.py:vit_s.")
flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, TensorBoard and figures go here.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (pods, clusters).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  import jax  # after flag parsing, so --help stays fast
  if FLAGS.multihost:
    jax.distributed.initialize()
  from msm_jax.metrics.logger import quiet_library_logs
  from msm_jax.training.pretrain import pretrain
  quiet_library_logs()
  pretrain(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
