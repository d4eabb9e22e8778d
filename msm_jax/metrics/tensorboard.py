"""TensorBoard scalar summaries written without TensorFlow.

The accelerator machines have no TensorFlow, and importing it next to JAX is slow and may claim
device memory. tensorboard's own EventFileWriter does its file I/O through `tensorboard.compat.tf`,
which imports TensorFlow whenever it is installed, so this module writes the event file itself:
tensorboard's protos serialised into TFRecord framing by tensorboard's pure-python RecordWriter.
The tensorboard package is optional; `open_scalar_writer` returns None without it.
"""
from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Mapping

from absl import logging

# Tells event files apart when one process opens several writers in the same second (tests, resumes).
_writer_ids = itertools.count()


def _load_tensorboard():
  # Imported lazily so that a missing tensorboard package only disables TensorBoard logging.
  from tensorboard.compat.proto import event_pb2, summary_pb2
  from tensorboard.summary.writer.record_writer import RecordWriter

  return event_pb2, summary_pb2, RecordWriter


class ScalarWriter:
  """Appends scalar summaries to a new event file in `logdir`.

  A SessionLog.START event at `first_step` is written first: TensorBoard then discards points with
  step >= first_step read from older event files in the directory, i.e. those a crashed run logged
  after its last checkpoint, so a resumed run does not show two overlapping curves.
  """

  def __init__(self, logdir: str, first_step: int = 0):
    self._event_pb2, self._summary_pb2, record_writer_cls = _load_tensorboard()
    os.makedirs(logdir, exist_ok=True)
    # The name pattern TensorBoard looks for; the leading timestamp orders files of one run.
    name = "events.out.tfevents.%010d.%s.%d.%d" % (
        time.time(), socket.gethostname(), os.getpid(), next(_writer_ids))
    self.path = os.path.join(logdir, name)
    self._writer = record_writer_cls(open(self.path, "wb"))
    self._write(self._event_pb2.Event(file_version="brain.Event:2"))
    self._write(self._event_pb2.Event(
        step=first_step,
        session_log=self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)))
    self.flush()

  def _write(self, event) -> None:
    event.wall_time = time.time()
    self._writer.write(event.SerializeToString())

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """Writes one event holding a scalar per (tag, value)."""
    summary = self._summary_pb2.Summary(value=[
        self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()
    ])
    self._write(self._event_pb2.Event(step=step, summary=summary))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    if not self._writer.closed:
      self._writer.close()


def open_scalar_writer(logdir: str, first_step: int = 0) -> ScalarWriter | None:
  """A ScalarWriter, or None (after one warning) when the tensorboard package is not installed."""
  try:
    return ScalarWriter(logdir, first_step)
  except ImportError as e:
    logging.warning("TensorBoard logging disabled, the tensorboard package is unavailable (%s). "
                    "`pip install tensorboard` to enable it.", e)
    return None
