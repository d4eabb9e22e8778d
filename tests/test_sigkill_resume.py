"""SIGKILL loses nothing: a tiny pretraining run killed during a checkpoint write, then again at
a random step, and resumed each time, ends with parameters bit-identical to an uninterrupted
run's, the automatic steps per call (4 here) included."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from configs.pretrain import get_config
from msm_jax.checkpoint.manager import Checkpointer, restore_params
from msm_jax.training.parallel import resolve_steps_per_call
from msm_jax.training.pretrain import pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = dict(input_shape=(32, 32, 1), batch_size=16, total_steps=32, warmup_steps=2,
              log_every=4, checkpoint_every=8, figure_every=0)
FLAGS = [f"--config.{k}={v}".replace(" ", "") for k, v in FIELDS.items()]
SAVE_THEN_DIE = """
import os, signal, sys
from absl import app
from launch import pretrain
from msm_jax.checkpoint import manager
save = manager.Checkpointer.save

def save_then_die(self, step, *args, **kwargs):
  result = save(self, step, *args, **kwargs)  # returns with the write still in flight
  if step == {step}:
    os.kill(os.getpid(), signal.SIGKILL)
  return result

manager.Checkpointer.save = save_then_die
sys.argv = ["pretrain"] + {argv!r}
app.run(pretrain.main)
"""


def command(workdir, kill_during_save_of=None):
  argv = ["--config=configs/pretrain.py:tiny", f"--workdir={workdir}", *FLAGS]
  if kill_during_save_of is None:
    return [sys.executable, "-m", "launch.pretrain", *argv]
  return [sys.executable, "-c", SAVE_THEN_DIE.format(step=kill_during_save_of, argv=argv)]


def logged_steps(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line)["step"] for line in f if line.endswith("\n")]


def test_killed_twice_and_resumed_ends_bit_identical(tmp_path):
  config = get_config("tiny")
  config.update(FIELDS)
  pretrain(config, str(tmp_path / "reference"))
  reference, _ = restore_params(str(tmp_path / "reference"))

  workdir = str(tmp_path / "killed")
  run = subprocess.run(command(workdir, kill_during_save_of=16), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
  assert Checkpointer(workdir).latest_step() in (8, 16)  # 16 only if its write outran the kill

  kill_at = random.randrange(17, 29)  # a step the resumed run reaches after logging step 16
  proc = subprocess.Popen(command(workdir), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while not any(step >= kill_at for step in logged_steps(workdir)):
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)

  run = subprocess.run(command(workdir), cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "4 train step(s) per compiled call" in run.stderr
  params, _ = restore_params(workdir)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(got, want, err_msg=f"killed at step >= {kill_at}")
  assert logged_steps(workdir) == list(range(4, 33, 4))


def test_automatic_steps_per_call_is_the_same_when_resumed_at_any_checkpoint():
  cadences = (FIELDS["total_steps"], FIELDS["log_every"], FIELDS["checkpoint_every"],
              FIELDS["figure_every"])
  first = resolve_steps_per_call(0, 0, *cadences, platform="cpu")
  assert first == 4
  for start in range(0, FIELDS["total_steps"], FIELDS["checkpoint_every"]):
    assert resolve_steps_per_call(0, start, *cadences, platform="cpu") == first
