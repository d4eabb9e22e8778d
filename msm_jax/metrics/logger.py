"""Training-progress logging: one stdout line, one metrics.jsonl record and TensorBoard scalars per call."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping

from msm_jax.metrics.tensorboard import open_scalar_writer

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _truncate_jsonl(path: str, start_step: int) -> None:
  """Drops records with step > start_step, which a run that died after logging them but before
  its next checkpoint left behind; the resumed run logs those steps again. A torn last line from
  such a crash does not parse and is dropped too."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if record.get("step", start_step + 1) <= start_step:
        kept.append(line if line.endswith("\n") else line + "\n")
  # Written aside and renamed so that a crash here cannot lose the records being kept.
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(kept)
  os.replace(tmp, path)


def _format_value(name: str, value) -> str:
  # Learning rates span decades (warm-up from ~0), so they read better in scientific notation.
  if isinstance(value, float) and (name == "lr" or name.endswith("learning_rate")):
    return f"{value:.2e}"
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


class TrainLogger:
  """Logs training progress of the chief host.

  `step` in log() is the number of training steps done so far and `start_step` the number done
  when the run starts, i.e. the step of the checkpoint it resumes from: records already logged for
  steps up to start_step stay, later ones are replaced by the resumed run's.

  Throughput counts the wall time between log() calls except the time spent inside
  pause()/resume() or `excluded()` (checkpoints, figures, evaluation), so it measures the train
  step alone; the first interval also holds compilation. ETA extrapolates the latest interval's
  time per step.
  """

  def __init__(self, workdir: str, *, total_steps: int, global_batch_size: int, start_step: int = 0,
               enabled: bool = True, tensorboard: bool = True,
               clock: Callable[[], float] = time.perf_counter):
    self.total_steps = total_steps
    self.global_batch_size = global_batch_size
    self.enabled = enabled
    self._clock = clock
    self._start_time = self._last_time = clock()
    self._last_step = start_step
    self._excluded_time = 0.0  # paused time since the previous log()
    self._pause_depth = 0
    self._pause_start = 0.0
    self._jsonl = None
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, METRICS_FILE)
      _truncate_jsonl(path, start_step)
      self._jsonl = open(path, "a")
      if tensorboard:
        self._tb = open_scalar_writer(os.path.join(workdir, TENSORBOARD_DIR), start_step + 1)

  def pause(self) -> None:
    """Stops counting time towards throughput until the matching resume(); calls may nest."""
    if self._pause_depth == 0:
      self._pause_start = self._clock()
    self._pause_depth += 1

  def resume(self) -> None:
    if self._pause_depth == 0:
      raise RuntimeError("resume() without a matching pause()")
    self._pause_depth -= 1
    if self._pause_depth == 0:
      self._excluded_time += self._clock() - self._pause_start

  @contextlib.contextmanager
  def excluded(self) -> Iterator[None]:
    """Time spent inside this block does not count against samples_per_sec."""
    self.pause()
    try:
      yield
    finally:
      self.resume()

  def log(self, step: int, metrics: Mapping[str, float]) -> dict:
    """Records `metrics` after `step`; returns the record (also on disabled, non-chief hosts)."""
    if step <= self._last_step:
      raise ValueError(f"step must increase between log() calls: got {step} after {self._last_step}")
    now = self._clock()
    excluded = self._excluded_time
    if self._pause_depth:  # log() inside a paused span: split the span at now.
      excluded += now - self._pause_start
      self._pause_start = now
    # Guarded because a coarse or fake clock can report no elapsed time.
    interval = max(now - self._last_time - excluded, 1e-9)
    steps = step - self._last_step
    self._last_time, self._last_step, self._excluded_time = now, step, 0.0

    # Non-numeric metrics (e.g. a phase name) are kept in the record but not sent to TensorBoard.
    values = {}
    for name, value in metrics.items():
      try:
        values[name] = float(value)
      except (TypeError, ValueError):
        values[name] = value
    eta_s = max(self.total_steps - step, 0) * interval / steps
    record = {
        "step": step,
        **values,
        "samples_per_sec": steps * self.global_batch_size / interval,
        "elapsed_s": now - self._start_time,
        "eta_s": eta_s,
    }
    if self.enabled:
      self._write(record)
    return record

  def _write(self, record: dict) -> None:
    width = len(str(self.total_steps))
    parts = [f"step {record['step']:>{width}}/{self.total_steps}"]
    parts += [f"{name} {_format_value(name, value)}" for name, value in record.items()
              if name not in ("step", "samples_per_sec", "elapsed_s", "eta_s")]
    parts.append(f"{record['samples_per_sec']:.1f} samples/s")
    parts.append(f"ETA {datetime.timedelta(seconds=round(record['eta_s']))}")
    print(" | ".join(parts), flush=True)

    # Flushed per record so that a crash loses at most the line being written.
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.scalars(record["step"], {name: value for name, value in record.items()
                                        if name != "step" and isinstance(value, float)})
      self._tb.flush()

  def close(self) -> None:
    """Flushes and closes the files; safe to call twice."""
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def quiet_library_logs() -> None:
 """Keeps INFO lines from msm-jax and launch scripts; other libraries (orbax logs every
 checkpoint in detail) only get through from WARNING up."""
 import logging as std_logging
 from absl import logging as absl_logging

 def ours_or_important(record) -> bool:
  return (record.levelno >= std_logging.WARNING or "/msm_jax/" in record.pathname
          or "/launch/" in record.pathname)

 absl_logging.get_absl_handler().addFilter(ours_or_important)
