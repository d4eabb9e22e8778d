r"""The paper's study end to end: pretrain, probe both tasks from each checkpoint (strict linear
and the paper's probe) and from a random encoder, train the same and a ~4x larger encoder from
scratch, a label-efficiency curve, held-out carrier configurations, the reconstruction curve.

  python -m launch.experiment --config=configs/experiment.py:cpu --workdir=/tmp/study

Writes WORKDIR/results.md, results.json and results.png; rerunning skips finished runs and resumes
an interrupted one. Variants and their cost: configs/experiment.py, docs/study.md.
"""
from absl import flags
from ml_collections import config_flags

from launch import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "e.g. configs/experiment.py:cpu")
flags.DEFINE_string("workdir", None, "Every run's workdir, the datasets and the results go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  import os
  from msm_jax.metrics.logger import quiet_library_logs
  from msm_jax.study.experiment import run_experiment
  quiet_library_logs()
  run_experiment(FLAGS.config, FLAGS.workdir)
  with open(os.path.join(FLAGS.workdir, "results.md")) as f:
    print(f.read())


if __name__ == "__main__":
  cli.run(main)
