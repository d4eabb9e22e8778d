"""The launch/ commands end a user error with one line and exit status 1, and keep tracebacks for
bugs (launch/cli.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from configs.pretrain import get_config
from launch.cli import user_error
from msm_jax.training.validate import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raised(fn):
  try:
    fn()
  except Exception as error:  # pylint: disable=broad-except
    return error
  raise AssertionError("did not raise")


def bad_config():
  config = get_config("tiny")
  config.input_shape = (30, 64, 1)
  validate_config(config)


def test_user_errors_are_ours_and_may_come_wrapped():
  ours = raised(bad_config)
  assert user_error(ours) is ours
  # A library that called our code (tensorflow-datasets calling a reader) wraps it.
  def wrapped():
    try:
      bad_config()
    except ValueError as error:
      raise RuntimeError("Failed to generate the split") from error
  assert user_error(raised(wrapped)) is not None
  assert "not divisible by patch" in str(user_error(raised(wrapped)))
  # The same kind raised inside a library is no user error of ours: its traceback is kept.
  assert user_error(raised(lambda: np.zeros(6).reshape(4, 4))) is None
  assert user_error(raised(lambda: {}["key"])) is None  # another kind, even from our frame


def command(module, *flags, **env):
  return subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env={**os.environ, **env})


@pytest.mark.parametrize("module,flags,message", [
    ("launch.pretrain", ["--config=configs/pretrain.py:tiny", "--config.input_shape=(30,64,1)"],
     "launch.pretrain: error: input 30x64 is not divisible by patch 8x8"),
    ("launch.finetune", ["--config=configs/finetune.py:seg_tiny", "--config.init_from=/nowhere"],
     "launch.finetune: error: "),
    ("launch.predict", ["--input=/nowhere/x.sigmf-meta", "--output=/tmp/x"],
     "launch.predict: error: "),
])
def test_a_user_error_is_one_line_and_exit_1(tmp_path, module, flags, message):
  run = command(module, f"--workdir={tmp_path / 'w'}", *flags)
  assert run.returncode == 1, run.stderr[-3000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith(message) and "Traceback" not in run.stderr, run.stderr[-3000:]


def test_a_diverged_run_says_where_it_stopped_in_one_line(tmp_path):
  run = command("launch.pretrain", "--config=configs/pretrain.py:tiny", f"--workdir={tmp_path}",
                "--config.input_shape=(32,32,1)", "--config.batch_size=8",
                "--config.base_lr=1e30", "--config.total_steps=8", "--config.warmup_steps=1",
                "--config.log_every=4", "--config.checkpoint_every=4", "--config.figure_every=0")
  assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith("launch.pretrain: error: Step ") and "went non-finite" in last, last


def test_tracebacks_on_request(tmp_path):
  run = command("launch.pretrain", "--config=configs/pretrain.py:tiny", f"--workdir={tmp_path}",
                "--config.input_shape=(30,64,1)", MSM_JAX_TRACEBACK="1")
  assert run.returncode != 0 and "Traceback" in run.stderr
