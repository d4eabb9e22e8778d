"""Tests for msm_jax.metrics: the training logger, TensorBoard event files and reconstruction figures."""
import json
import logging
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from msm_jax.metrics import tensorboard as tb
from msm_jax.metrics.figures import patch_mask_to_pixels, save_reconstruction_figure
from msm_jax.metrics.logger import TrainLogger


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now

  def advance(self, seconds):
    self.now += seconds


def read_jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def read_events(logdir):
  """Parses every TFRecord in the event files of `logdir`, checking both CRCs."""
  event_pb2 = pytest.importorskip("tensorboard.compat.proto.event_pb2")
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

  events = []
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
      header = data[pos:pos + 8]
      (length,) = struct.unpack("<Q", header)
      assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc32c(header)
      payload = data[pos + 12:pos + 12 + length]
      assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked_crc32c(payload)
      events.append(event_pb2.Event.FromString(payload))
      pos += 16 + length
  return events


def scalars(events):
  return {(e.step, v.tag): v.simple_value for e in events if e.HasField("summary") for v in e.summary.value}


def test_log_prints_writes_and_measures_throughput(tmp_path, capsys):
  clock = FakeClock()
  logger = TrainLogger(str(tmp_path), total_steps=100, global_batch_size=32, clock=clock)
  clock.advance(2.0)
  record = logger.log(10, {"loss": 0.8123, "lr": 1.2e-4})
  clock.advance(1.0)
  logger.log(20, {"loss": 0.5, "lr": 2.4e-4, "phase": "warmup"})
  logger.close()

  assert record["samples_per_sec"] == pytest.approx(10 * 32 / 2.0)
  assert record["eta_s"] == pytest.approx(90 * 0.2)
  assert record["elapsed_s"] == pytest.approx(2.0)
  lines = capsys.readouterr().out.splitlines()
  assert lines == [
      "step  10/100 | loss 0.8123 | lr 1.20e-04 | 160.0 samples/s | ETA 0:00:18",
      "step  20/100 | loss 0.5 | lr 2.40e-04 | phase warmup | 320.0 samples/s | ETA 0:00:08",
  ]
  records = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == [10, 20]
  for r in records:
    assert {"step", "loss", "lr", "samples_per_sec", "elapsed_s"} <= r.keys()
  assert records[1]["samples_per_sec"] == pytest.approx(320.0)
  assert records[1]["elapsed_s"] == pytest.approx(3.0)
  assert records[1]["phase"] == "warmup"


def test_paused_time_is_excluded_from_throughput(tmp_path):
  clock = FakeClock()
  logger = TrainLogger(str(tmp_path), total_steps=100, global_batch_size=8, clock=clock, tensorboard=False)
  clock.advance(1.0)
  with logger.excluded():  # e.g. a checkpoint
    clock.advance(50.0)
    logger.pause()  # nested: the outer block still owns the pause
    clock.advance(5.0)
    logger.resume()
    clock.advance(5.0)
  clock.advance(1.0)
  assert logger.log(10, {"loss": 1.0})["samples_per_sec"] == pytest.approx(10 * 8 / 2.0)

  # A log() inside a paused span counts only the unpaused part on either side of it.
  clock.advance(1.0)
  logger.pause()
  clock.advance(3.0)
  assert logger.log(20, {"loss": 1.0})["samples_per_sec"] == pytest.approx(10 * 8 / 1.0)
  clock.advance(3.0)
  logger.resume()
  clock.advance(4.0)
  record = logger.log(30, {"loss": 1.0})
  assert record["samples_per_sec"] == pytest.approx(10 * 8 / 4.0)
  assert record["elapsed_s"] == pytest.approx(73.0)
  with pytest.raises(RuntimeError, match="resume"):
    logger.resume()
  with pytest.raises(ValueError, match="step must increase"):
    logger.log(30, {"loss": 1.0})
  logger.close()


def test_resume_drops_orphaned_records_and_appends(tmp_path):
  clock = FakeClock()
  first = TrainLogger(str(tmp_path), total_steps=50, global_batch_size=4, clock=clock)
  for step in (10, 20, 30):
    clock.advance(1.0)
    first.log(step, {"loss": 1.0 / step, "lr": 1e-3})
  first.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 40, "lo')  # torn last line of a killed process

  # The last checkpoint was after step 20: records after it are logged again by the resumed run.
  resumed = TrainLogger(str(tmp_path), total_steps=50, global_batch_size=4, start_step=20, clock=clock)
  assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [10, 20]
  for step in (30, 40):
    clock.advance(1.0)
    resumed.log(step, {"loss": 0.5, "lr": 1e-3})
  resumed.close()
  records = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == [10, 20, 30, 40]
  assert [r["loss"] for r in records] == [0.1, 0.05, 0.5, 0.5]

  # A fresh run (start_step=0) in the same workdir starts a new file.
  TrainLogger(str(tmp_path), total_steps=50, global_batch_size=4).close()
  assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_disabled_logger_writes_nothing(tmp_path, capsys):
  clock = FakeClock()
  workdir = tmp_path / "run"
  logger = TrainLogger(str(workdir), total_steps=10, global_batch_size=2, enabled=False, clock=clock)
  clock.advance(0.5)
  record = logger.log(5, {"loss": 2.0, "lr": 0.1})
  logger.close()
  assert record["samples_per_sec"] == pytest.approx(20.0)
  assert record["loss"] == 2.0
  assert not workdir.exists()
  assert capsys.readouterr().out == ""


def test_tensorboard_scalars_readable(tmp_path):
  pytest.importorskip("tensorboard")
  clock = FakeClock()
  logger = TrainLogger(str(tmp_path), total_steps=100, global_batch_size=16, clock=clock)
  clock.advance(2.0)
  logger.log(10, {"loss": 0.75, "lr": 3e-4, "phase": "warmup"})
  clock.advance(2.0)
  logger.log(20, {"loss": 0.25, "lr": 6e-4})
  logger.close()
  resumed = TrainLogger(str(tmp_path), total_steps=100, global_batch_size=16, start_step=20, clock=clock)
  resumed.close()

  files = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(files) == 2
  events = read_events(tmp_path / "tensorboard")
  assert events[0].file_version == "brain.Event:2"
  values = scalars(events)
  assert values[(10, "loss")] == pytest.approx(0.75)
  assert values[(10, "lr")] == pytest.approx(3e-4)
  assert values[(10, "samples_per_sec")] == pytest.approx(80.0)
  assert values[(20, "loss")] == pytest.approx(0.25)
  assert not any(tag == "phase" for _, tag in values)
  # Each writer announces its first step so that TensorBoard purges orphaned points on resume.
  starts = [e.step for e in events if e.HasField("session_log")]
  assert starts == [1, 21]


def test_missing_tensorboard_warns_and_continues(tmp_path, monkeypatch, caplog):
  def no_tensorboard():
    raise ImportError("No module named 'tensorboard'")

  monkeypatch.setattr(tb, "_load_tensorboard", no_tensorboard)
  with caplog.at_level(logging.WARNING):
    logger = TrainLogger(str(tmp_path), total_steps=10, global_batch_size=2)
  assert any("tensorboard" in r.getMessage().lower() for r in caplog.records)
  assert logger.log(5, {"loss": 1.0})["step"] == 5
  logger.close()
  assert not (tmp_path / "tensorboard").exists()
  assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 1


def test_metrics_never_import_tensorflow(tmp_path):
  # A fresh interpreter, because other tests in the session may import TensorFlow themselves.
  code = textwrap.dedent(f"""
      import sys
      import numpy as np
      from msm_jax.metrics.figures import save_reconstruction_figure
      from msm_jax.metrics.logger import TrainLogger
      logger = TrainLogger({str(tmp_path)!r}, total_steps=4, global_batch_size=1)
      logger.log(2, {{"loss": 1.0}})
      logger.close()
      x = np.zeros((1, 4, 4, 1))
      save_reconstruction_figure({str(tmp_path / 'f.png')!r}, x, np.ones((1, 4), bool), x, (2, 2))
      assert "tensorflow" not in sys.modules, "tensorflow was imported"
      assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
  """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
  assert result.returncode == 0, result.stderr


def test_patch_mask_to_pixels_hand_example():
  masks = np.array([[True, False, False,
                     False, False, True]])
  pixels = patch_mask_to_pixels(masks, grid_shape=(2, 3), patch_size=(2, 1))
  expected = np.array([[[1, 0, 0],
                        [1, 0, 0],
                        [0, 0, 1],
                        [0, 0, 1]]], bool)
  np.testing.assert_array_equal(pixels, expected)
  with pytest.raises(ValueError, match="masks"):
    patch_mask_to_pixels(masks, grid_shape=(2, 2), patch_size=(2, 1))


def _grey_pixels(png):
  # The masked-input panel draws masked pixels in grey 0.7 (178/255 in the 8-bit PNG).
  rgb = png[..., :3]
  return int(np.all(np.abs(rgb - 0.7) < 1.5 / 255, axis=-1).sum())


def test_reconstruction_figure_png(tmp_path):
  rng = np.random.default_rng(0)
  # 18 frames with patch height 4: the 2 frames beyond the patch grid are cropped.
  images = rng.normal(size=(3, 18, 12, 2)).astype(np.float32)
  reconstructions = rng.normal(size=(3, 18, 12, 2)).astype(np.float32)
  masks = rng.random((3, 4 * 3)) < 0.5
  path = tmp_path / "sub" / "dir" / "recon.png"
  returned = save_reconstruction_figure(str(path), images, masks, reconstructions, (4, 4),
                                        max_examples=2, title="step 100")
  assert returned == str(path)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  png = matplotlib.image.imread(str(path))
  assert png.shape[2] in (3, 4)
  # 11 x (2.8 per row + 0.4 title) inches at 100 dpi, two rows.
  assert png.shape[:2] == (600, 1100)
  assert png[..., :3].std() > 0.1  # something was drawn
  assert _grey_pixels(png) > 2000

  unmasked = tmp_path / "unmasked.png"
  save_reconstruction_figure(str(unmasked), images, np.zeros_like(masks), reconstructions, (4, 4),
                             max_examples=1)
  assert _grey_pixels(matplotlib.image.imread(str(unmasked))) < 200


@pytest.mark.parametrize("argument, kwargs", [
    ("images", dict(images=np.zeros((8, 8, 1)))),
    ("masks", dict(masks=np.zeros((2, 5), bool))),
    ("reconstructions", dict(reconstructions=np.zeros((3, 8, 8, 1)))),
    ("reconstructions", dict(reconstructions=np.zeros((2, 4, 8, 1)))),
    ("patch_size", dict(patch_size=(16, 4))),
    ("max_examples", dict(max_examples=0)),
])
def test_reconstruction_figure_rejects_bad_shapes(tmp_path, argument, kwargs):
  args = dict(path=str(tmp_path / "x.png"), images=np.zeros((2, 8, 8, 1)), masks=np.zeros((2, 4), bool),
              reconstructions=np.zeros((2, 8, 8, 1)), patch_size=(4, 4))
  args.update(kwargs)
  with pytest.raises(ValueError, match=argument):
    save_reconstruction_figure(**args)
  assert not (tmp_path / "x.png").exists()
