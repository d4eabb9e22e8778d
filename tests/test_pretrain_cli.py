"""The command line: a few steps of `tiny`, resume, interruption, and config errors."""
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from configs.pretrain import get_config
from msm_jax.checkpoint.manager import Checkpointer
from msm_jax.training.validate import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config.input_shape=(32,32,1)", "--config.batch_size=16", "--config.warmup_steps=2",
         "--config.log_every=2", "--config.checkpoint_every=3", "--config.figure_every=6"]


def pretrain(workdir, *flags, wait=True):
  cmd = [sys.executable, "-m", "launch.pretrain", "--config=configs/pretrain.py:tiny",
         f"--workdir={workdir}", *SMALL, *flags]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=300)
  return proc.returncode, out, err


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_cli_trains_checkpoints_draws_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  code, out, err = pretrain(workdir, "--config.total_steps=6")
  assert code == 0, err[-3000:]
  assert "step 6/6" in out and "samples/s" in out and "ETA" in out
  rows = records(workdir)
  assert [r["step"] for r in rows] == [2, 3, 4, 6]  # validated with every checkpoint, at 3 and 6
  assert all({"loss", "lr", "samples_per_sec"} <= set(r) for r in rows if r["step"] % 2 == 0)
  assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
  assert 0 < rows[-1]["val_loss"] < rows[1]["val_loss"]  # the same examples and masks each time
  assert os.path.getsize(os.path.join(workdir, "figures", "reconstruction_0000006.png")) > 10_000
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert Checkpointer(workdir).latest_step() == 6

  code, out, err = pretrain(workdir, "--config.total_steps=10")
  assert code == 0, err[-3000:]
  assert "Resumed" in err and "step 10/10" in out
  assert [r["step"] for r in records(workdir)] == [2, 3, 4, 6, 8, 9, 10]
  assert Checkpointer(workdir).latest_step() == 10
  with open(os.path.join(workdir, "status.json")) as f:
    assert json.load(f) == {"step": 10, "total_steps": 10, "finished": True, "skipped_steps": 0}


def test_sigterm_saves_a_checkpoint_and_the_rerun_continues(tmp_path):
  workdir = str(tmp_path / "run")
  proc = pretrain(workdir, "--config.total_steps=100000", "--config.log_every=1",
                  "--config.checkpoint_every=100000", "--config.figure_every=0", wait=False)
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 240
  while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  stopped_at = Checkpointer(workdir).latest_step()
  assert stopped_at is not None and stopped_at == records(workdir)[-1]["step"]
  with open(os.path.join(workdir, "status.json")) as f:
    assert json.load(f)["finished"] is False

  code, out, err = pretrain(workdir, f"--config.total_steps={stopped_at + 2}",
                            "--config.log_every=1")
  assert code == 0, err[-3000:]
  assert f"Resumed from {workdir} at step {stopped_at}" in err
  assert [r["step"] for r in records(workdir)][-2:] == [stopped_at + 1, stopped_at + 2]


def test_cli_reports_a_bad_config_by_field(tmp_path):
  code, _, err = pretrain(str(tmp_path / "run"), "--config.mask_ratio=0.99")
  assert code != 0
  assert "config.mask_ratio must be in [0.05, 0.95]" in err


@pytest.mark.parametrize("field,value,message", [
    ("input_shape", (60, 64, 1), "not divisible by patch 8x8"),
    ("mask_ratio", 0.02, "config.mask_ratio"),
    ("batch_size", 12, "config.batch_size=12 is not divisible by the 8 devices"),
    ("grad_accum_steps", 3, "config.grad_accum_steps=3"),
    ("warmup_steps", 5000, "config.warmup_steps=5000"),
    ("parallel", "dp", "config.parallel"),
    ("steps_per_call", 7, "config.total_steps=1000 must be a multiple of config.steps_per_call=7"),
    ("steps_per_call", -1, "config.steps_per_call=-1 must be >= 1, or 0 for automatic"),
])
def test_impossible_configs_name_the_field(field, value, message):
  config = get_config("tiny")
  config[field] = value
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
    validate_config(config)
    from msm_jax.training.parallel import Parallel
    Parallel(config.parallel)


def test_dtype_and_data_source_errors_name_the_field():
  config = get_config("tiny")
  config.model.dtype = "float16"
  with pytest.raises(ValueError, match="config.model.dtype"):
    validate_config(config)
  from msm_jax.data.source import make_source
  config = get_config("tiny")
  config.data.source = "s3"
  with pytest.raises(ValueError, match="config.data.source"):
    make_source(config.data, config.input_shape, 0)
  config.data.source = "tfds"
  config.data.data_dir = "/nonexistent/msm"
  with pytest.raises(ValueError, match="config.data"):
    make_source(config.data, config.input_shape, 0)


def test_bfloat16_on_cpu_is_allowed_with_a_warning_naming_the_field(caplog):
  config = get_config("vit_s")
  config.model.dtype = "bfloat16"
  with caplog.at_level(logging.WARNING):
    validate_config(config)
  assert "config.model.dtype='bfloat16' on CPU" in caplog.text
  for dtype in ("auto", "float32"):  # the default resolves to float32 on CPU
    caplog.clear()
    config.model.dtype = dtype
    with caplog.at_level(logging.WARNING):
      validate_config(config)
    assert "config.model.dtype" not in caplog.text


def test_several_steps_per_call_log_and_checkpoint_at_call_boundaries(tmp_path):
  from msm_jax.training.pretrain import pretrain
  config = get_config("tiny")
  config.update(dict(input_shape=(32, 32, 1), batch_size=16, total_steps=8, warmup_steps=1,
                     steps_per_call=2, log_every=3, checkpoint_every=5, figure_every=0))
  state = pretrain(config, str(tmp_path))
  assert int(state.step) == 8
  # Calls end at steps 2, 4, 6, 8: a cadence is honoured at the end of the call reaching it.
  assert [r["step"] for r in records(str(tmp_path))] == [4, 6, 8]
  assert Checkpointer(str(tmp_path)).all_steps() == [6, 8]


def test_automatic_steps_per_call_divides_every_boundary():
  from msm_jax.training.parallel import resolve_steps_per_call
  assert resolve_steps_per_call(3, 0, 100, 10, platform="cpu") == 3  # explicit: kept
  # start, total, log/checkpoint/figure cadences (0 = figures off, no constraint)
  assert resolve_steps_per_call(0, 0, 100_000, 100, 2_000, 5_000, platform="cpu") == 4
  assert resolve_steps_per_call(0, 0, 1_000, 50, 250, 250, platform="cpu") == 2
  assert resolve_steps_per_call(0, 0, 200, 10, 2_000, 0, platform="cpu") == 2
  assert resolve_steps_per_call(0, 6, 200, 100, 100, 0, platform="cpu") == 2  # resumed at 6
  assert resolve_steps_per_call(0, 0, 1_000, 7, 250, 250, platform="cpu") == 1
  assert resolve_steps_per_call(0, 0, 100_000, 100, 2_000, 5_000, platform="gpu") == 1


def test_automatic_steps_per_call_keeps_exact_cadences_and_resume_checks_it(tmp_path, monkeypatch):
  from msm_jax.training import loop
  from msm_jax.training.pretrain import pretrain
  compiled_with = []

  class Spy(loop.Parallel):
    def __init__(self, mode, steps_per_call=1):
      compiled_with.append(steps_per_call)
      super().__init__(mode, steps_per_call)
  monkeypatch.setattr(loop, "Parallel", Spy)
  config = get_config("tiny")
  assert config.steps_per_call == 0
  config.update(dict(input_shape=(32, 32, 1), batch_size=16, total_steps=8, warmup_steps=1,
                     log_every=4, checkpoint_every=8, figure_every=0))
  pretrain(config, str(tmp_path))
  assert compiled_with == [4]
  assert [r["step"] for r in records(str(tmp_path))] == [4, 8]
  # Resumed at step 8 towards 18: 10 steps left. Explicit 3 steps per call cannot end there...
  config.update(dict(total_steps=18, steps_per_call=3, checkpoint_every=18))
  with pytest.raises(ValueError, match="config.steps_per_call=3 does not divide the 10 steps "
                                       "left after resuming at step 8"):
    pretrain(config, str(tmp_path))
  # ... and automatic picks 2, which divides 8, 18 and the cadences.
  config.steps_per_call = 0
  state = pretrain(config, str(tmp_path))
  assert compiled_with[-1] == 2 and int(state.step) == 18
  assert [r["step"] for r in records(str(tmp_path))] == [4, 8, 12, 16, 18]
