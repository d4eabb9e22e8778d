r"""Finetune a pretrained radio foundation model on a labelled task, then evaluate it.

  python -m launch.finetune --config=configs/finetune.py:seg_tiny --workdir=/tmp/seg \
      --config.init_from=/tmp/msm_tiny

Writes checkpoints, metrics.jsonl, TensorBoard files, eval.json and figures into --workdir;
rerunning with the same --workdir resumes. --multihost calls jax.distributed.initialize() first.
"""
import json

from absl import flags
from ml_collections import config_flags

from launch import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/finetune.py:har_tiny.")
flags.DEFINE_string("workdir", None, "Checkpoints, metrics, eval.json and figures go here.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (pods, clusters).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  import jax  # after flag parsing, so --help stays fast
  if FLAGS.multihost:
    jax.distributed.initialize()
  from msm_jax.finetune.task import finetune
  from msm_jax.metrics.logger import quiet_library_logs
  quiet_library_logs()
  _, metrics = finetune(FLAGS.config, FLAGS.workdir)
  headline = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
  print(f"Evaluation ({FLAGS.workdir}/eval.json): {json.dumps(headline)}")


if __name__ == "__main__":
  cli.run(main)
