"""The best parameters by a validation metric, kept beside the latest checkpoints.

Layout: WORKDIR/best/checkpoints/<step> (a Checkpointer's layout, so restore_params(WORKDIR/best)
and restore_encoder(WORKDIR/best) load it) and WORKDIR/best/best.json: {'step', 'metric', 'value'}.
"""
import json
import os

import jax

from msm_jax.checkpoint.manager import Checkpointer

BEST_SUBDIR = "best"
RECORD_FILE = "best.json"


class BestCheckpoint:
  """Saves params whose `metric` (higher is better) beats every value seen before, resumed runs
  included. Every process must call save(), as for Checkpointer."""

  def __init__(self, workdir: str, metric: str):
    self.directory = os.path.join(workdir, BEST_SUBDIR)
    self.metric = metric
    self.value = None
    self._checkpointer = Checkpointer(self.directory, max_to_keep=1)
    record = os.path.join(self.directory, RECORD_FILE)
    if os.path.exists(record):
      with open(record) as f:
        saved = json.load(f)
      # A record whose checkpoint never finished (the run was killed while writing it) is void.
      if saved["metric"] == metric and saved["step"] in self._checkpointer.all_steps():
        self.value = saved["value"]

  def improves(self, metrics: dict) -> bool:
    value = metrics.get(self.metric)
    return value is not None and (self.value is None or value > self.value)

  def save(self, step: int, metrics: dict, state, encoder_params, model_config: dict):
    self.value = float(metrics[self.metric])
    self._checkpointer.save(step, state, encoder_params, model_config, force=True)
    if jax.process_index() == 0:
      with open(os.path.join(self.directory, RECORD_FILE), "w") as f:
        json.dump({"step": int(step), "metric": self.metric, "value": self.value}, f)

  def close(self):
    self._checkpointer.close()
