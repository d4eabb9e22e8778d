"""Radio recordings (SigMF / .npy), MathWorks-style frames and the radio_segmentation dataset."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from msm_jax.data.radio import mathworks
from msm_jax.data.radio.recordings import (Recording, RecordingError, read_recording,
                                           recording_spectrograms)
from msm_jax.data.radio.stft import power_spectrogram, spec_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 3.84e6



def write_sigmf(base, iq, datatype, **extra_global):
  body, _, order = datatype.partition("_")
  kind, bits = body[1], int(body[2:])
  pairs = np.stack([iq.real, iq.imag], axis=-1).reshape(-1)
  if kind == "f":
    dtype = np.dtype(f"f{bits // 8}")
  else:
    dtype = np.dtype(f"{kind}{bits // 8}")
    full = 2.0 ** (bits - 1)
    pairs = np.round(pairs * full + (full if kind == "u" else 0))
  dtype = dtype.newbyteorder(">" if order == "be" else "<")
  pairs.astype(dtype).tofile(base + ".sigmf-data")
  meta = {"global": {"core:datatype": datatype, "core:sample_rate": RATE, **extra_global},
          "captures": [{"core:sample_start": 0, "core:frequency": 3.5e9}],
          "annotations": [{"core:sample_start": 10, "core:sample_count": 100, "core:label": "x"}]}
  with open(base + ".sigmf-meta", "w") as f:
    json.dump(meta, f)


def random_iq(n, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform(-0.7, 0.7, n) + 1j * rng.uniform(-0.7, 0.7, n)).astype(np.complex64)


@pytest.mark.parametrize("datatype,tolerance", [
    ("cf32_le", 1e-7), ("cf64_be", 1e-7), ("ci16_le", 1e-4), ("ci16_be", 1e-4), ("ci8", 1e-2),
    ("cu8", 1e-2), ("ci32_le", 1e-7)])
def test_sigmf_round_trip(tmp_path, datatype, tolerance):
  iq = random_iq(1000)
  base = str(tmp_path / "capture")
  write_sigmf(base, iq, datatype)
  for path in (base + ".sigmf-meta", base + ".sigmf-data"):
    recording = read_recording(path)
    assert recording.iq.dtype == np.complex64 and recording.iq.shape == (1000,)
    np.testing.assert_allclose(recording.iq, iq, atol=tolerance)
    assert recording.sample_rate == RATE and recording.center_frequency == 3.5e9
    assert recording.annotations[0]["core:label"] == "x"


def test_npy_recordings_and_sidecar(tmp_path):
  iq = random_iq(500)
  np.save(tmp_path / "a.npy", iq)
  assert read_recording(str(tmp_path / "a.npy"), sample_rate=RATE).sample_rate == RATE
  np.save(tmp_path / "b.npy", np.stack([iq.real, iq.imag]))
  (tmp_path / "b.json").write_text(json.dumps({"sample_rate": RATE, "center_frequency": 2.4e9}))
  b = read_recording(str(tmp_path / "b.npy"))
  np.testing.assert_allclose(b.iq, iq, atol=1e-7)
  assert b.center_frequency == 2.4e9
  np.save(tmp_path / "c.npy", np.stack([iq.real, iq.imag], axis=1))
  np.testing.assert_allclose(read_recording(str(tmp_path / "c.npy"), RATE).iq, iq, atol=1e-7)


def test_corrupt_recordings_name_file_and_problem(tmp_path):
  base = str(tmp_path / "cap")
  write_sigmf(base, random_iq(100), "ci16_le")
  with open(base + ".sigmf-data", "ab") as f:
    f.write(b"\x00")  # half a sample: truncated or mislabelled
  with pytest.raises(RecordingError, match=r"cap\.sigmf-data.*not a whole number"):
    read_recording(base + ".sigmf-meta")
  os.remove(base + ".sigmf-data")
  with pytest.raises(RecordingError, match=r"cap\.sigmf-data: missing"):
    read_recording(base + ".sigmf-meta")
  write_sigmf(str(tmp_path / "real"), random_iq(10), "cf32_le")
  meta = json.loads((tmp_path / "real.sigmf-meta").read_text())
  meta["global"]["core:datatype"] = "rf32_le"
  (tmp_path / "real.sigmf-meta").write_text(json.dumps(meta))
  with pytest.raises(RecordingError, match=r"real\.sigmf-meta.*'rf32_le'"):
    read_recording(str(tmp_path / "real.sigmf-meta"))
  (tmp_path / "broken.sigmf-meta").write_text("{not json")
  (tmp_path / "broken.sigmf-data").write_bytes(b"")
  with pytest.raises(RecordingError, match=r"broken\.sigmf-meta: not SigMF metadata"):
    read_recording(str(tmp_path / "broken.sigmf-meta"))
  np.save(tmp_path / "norate.npy", random_iq(10))
  with pytest.raises(RecordingError, match=r"norate\.npy: no sample rate.*norate\.json"):
    read_recording(str(tmp_path / "norate.npy"))
  np.save(tmp_path / "shape.npy", np.zeros((3, 5)))
  with pytest.raises(RecordingError, match=r"shape\.npy: holds float64 \(3, 5\)"):
    read_recording(str(tmp_path / "shape.npy"), RATE)
  (tmp_path / "trunc.npy").write_bytes(np.lib.format.magic(1, 0) + b"\x10\x00{'descr'")
  with pytest.raises(RecordingError, match=r"trunc\.npy: not a readable"):
    read_recording(str(tmp_path / "trunc.npy"), RATE)
  with pytest.raises(RecordingError, match=r"capture\.wav: not a recording"):
    read_recording(str(tmp_path / "capture.wav"))


def test_recording_spectrograms_windows_and_errors():
  iq = random_iq(int(RATE * 0.016 * 3.5))
  recording = Recording(iq=iq, sample_rate=RATE, center_frequency=None, annotations=[], path="r")
  power = recording_spectrograms(recording, (16, 32, 1))
  assert power.shape == (3, 16, 32, 1) and power.dtype == np.float32
  window = int(round(RATE * 0.016))
  np.testing.assert_allclose(power[1, ..., 0], power_spectrogram(iq[window:2 * window],
                                                                 spec_for(16, 32)), rtol=1e-6)
  with pytest.raises(RecordingError, match="r: a 16 ms window at 3.84 Msps.*fewer time rows"):
    recording_spectrograms(recording, (512, 32, 1))
  with pytest.raises(RecordingError, match="shorter than one 100 ms window"):
    recording_spectrograms(recording, (16, 32, 1), window_seconds=0.1)
  with pytest.raises(RecordingError, match="1 channel"):
    recording_spectrograms(recording, (16, 32, 2))


def write_frames(folder, count, size=32):
  """MathWorks-style frames: dB spectrogram .mat (rxSpectrogram) + 0/127/255 label PNG."""
  from PIL import Image
  from scipy import io
  os.makedirs(folder, exist_ok=True)
  labels = np.zeros((size, size), np.uint8)
  labels[:, 4:12] = 255  # LTE
  labels[8:24, 20:28] = 127  # NR
  for i in range(count):
    db = np.where(labels > 0, 20.0, 0.0) + np.random.default_rng(i).normal(0, 1, labels.shape) - 3
    io.savemat(os.path.join(folder, f"frame_{i}.mat"), {"rxSpectrogram": db})
    Image.fromarray(labels).save(os.path.join(folder, f"frame_{i}_label.png"))
  return labels


def test_mathworks_frame_has_the_right_classes(tmp_path):
  write_frames(str(tmp_path), 1)
  [(spectrogram, label)] = mathworks.find_frames(str(tmp_path))
  power, ids = mathworks.read_frame(spectrogram, label, (16, 16, 1), ("noise", "lte", "nr"))
  assert power.shape == (16, 16, 1) and power.dtype == np.float32 and ids.dtype == np.uint8
  assert set(np.unique(ids)) == {0, 1, 2}
  assert (ids[:, 2:6] == 1).all() and (ids[4:12, 10:14] == 2).all() and ids[0, 15] == 0
  assert power[ids == 1].mean() > 30 * power[ids == 0].mean()  # dB -> linear power
  from PIL import Image
  Image.fromarray(np.full((32, 32), 64, np.uint8)).save(label)
  with pytest.raises(RecordingError, match=r"frame_0_label\.png: label values \[64\]"):
    mathworks.read_frame(spectrogram, label, (16, 16, 1), ("noise", "lte", "nr"))


def test_radio_segmentation_builds_and_tfds_source_reads_labels(tmp_path):
  from msm_jax.data import radio_segmentation
  from msm_jax.data.tfds_pipeline import TfdsSource
  shape = (16, 32, 1)
  version_dir, skipped = radio_segmentation.build(str(tmp_path), num_examples=6, shape=shape,
                                                  seed=1, num_eval_examples=2)
  assert skipped == [] and os.path.exists(os.path.join(version_dir, "stats.json"))
  source = TfdsSource(name="radio_segmentation", data_dir=str(tmp_path), split="train",
                      input_shape=shape, seed=0, shuffle_buffer=4, prefetch=1)
  assert source.classes == ("noise", "lte", "nr")
  batches = list(source.epoch(4))
  labels = np.concatenate([b["label"] for b in batches])
  assert labels.shape == (6, 16, 32) and labels.dtype == np.int32
  assert set(np.unique(labels)) <= {0, 1, 2} and len(np.unique(labels)) >= 2
  from msm_jax.data import parallel
  expected = [parallel.example("lte_nr", shape, 1, 0, "train", i)["label"] for i in range(6)]
  assert sorted(map(bytes, labels.astype(np.uint8))) == sorted(map(bytes, expected))
  with pytest.raises(ValueError, match="already holds radio_segmentation"):
    radio_segmentation.build(str(tmp_path), num_examples=7, shape=shape, seed=1)


def test_make_dataset_radio_segmentation_from_frames_skips_bad(tmp_path):
  frames = str(tmp_path / "frames")
  write_frames(frames, 10)
  (tmp_path / "frames" / "frame_3_label.png").unlink()  # one frame without its label map
  command = [sys.executable, "-m", "launch.make_dataset", "--dataset=radio_segmentation",
             f"--data_dir={tmp_path / 'data'}", f"--frames={frames}", "--height=16", "--width=16"]
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  assert failed.returncode != 0 and "frame_3_label.png is missing" in failed.stderr
  result = subprocess.run(command + ["--skip_bad", f"--data_dir={tmp_path / 'data2'}"], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Skipped 1 bad file(s)" in result.stdout and "frame_3" in result.stdout
  version_dir = tmp_path / "data2" / "radio_segmentation" / "1.0.0"
  assert f"Built radio_segmentation in {version_dir}" in result.stdout
  info = json.loads((version_dir / "dataset_info.json").read_text())
  sizes = {s["name"]: sum(int(n) for n in s.get("shardLengths", [0])) for s in info["splits"]}
  assert sum(sizes.values()) == 9 and sizes["validation"] == sizes["test"] == 1


def test_parallel_examples_do_not_depend_on_workers():
  from msm_jax.data import parallel
  args = ("lte_nr", (8, 16, 1), 2, 1, "validation", 3)
  here = list(parallel.examples(*args, workers=1))
  spawned = list(parallel.examples(*args, workers=2))
  for a, b in zip(here, spawned, strict=True):
    np.testing.assert_array_equal(a["spectrogram"], b["spectrogram"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_radio_pretrain_from_recordings_stft_in_pipeline(tmp_path):
  from msm_jax.data.normalize import standardize
  from msm_jax.data.tfds_pipeline import TfdsSource
  inputs = tmp_path / "in"
  inputs.mkdir()
  window = int(round(RATE * 0.016))
  tone = np.exp(2j * np.pi * 0.2 * np.arange(7 * window)).astype(np.complex64)
  write_sigmf(str(inputs / "a"), 0.5 * random_iq(7 * window) + 0.1 * tone, "ci16_le")
  np.save(inputs / "b.npy", random_iq(5 * window + 100, seed=1))
  (inputs / "b.json").write_text(json.dumps({"sample_rate": RATE}))
  (inputs / "c.sigmf-meta").write_text("{}")  # bad: no global / no data file
  command = [sys.executable, "-m", "launch.make_dataset", "--dataset=radio_pretrain",
             f"--recordings={inputs}/*", "--height=16", "--width=32"]
  failed = subprocess.run(command + [f"--data_dir={tmp_path / 'x'}"], cwd=REPO,
                          capture_output=True, text=True)
  assert failed.returncode != 0 and "c.sigmf-data: missing" in failed.stderr
  result = subprocess.run(command + [f"--data_dir={tmp_path / 'data'}", "--skip_bad"], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Skipped 1 bad file(s)" in result.stdout
  shape = (16, 32, 1)
  source = TfdsSource(name="radio_pretrain", data_dir=str(tmp_path / "data"), split="train",
                      input_shape=shape, seed=0, shuffle_buffer=1, prefetch=1)
  images = np.concatenate([b["image"] for b in source.epoch(4)])
  assert images.shape == (10, 16, 32, 1)  # 12 windows: 8 = validation, 9 = test
  # The tf.data STFT of stored windows == the numpy spectrograms of the same windows.
  iq = np.concatenate([read_recording(str(inputs / "a.sigmf-meta")).iq,
                       read_recording(str(inputs / "b.npy")).iq[:5 * window]])
  expected = recording_spectrograms(
      Recording(iq=iq, sample_rate=RATE, center_frequency=None, annotations=[], path="x"), shape)
  expected = standardize(expected[[i for i in range(12) if i % 10 < 8]], source.stats["mean"],
                         source.stats["std"])
  distance = np.abs(images[:, None] - expected[None]).reshape(10, 10, -1).max(axis=-1)
  assert distance.min(axis=1).max() < 2e-4  # every image is one window (tfds orders by key hash)
  assert sorted(distance.argmin(axis=1)) == list(range(10))
  assert abs(images.mean()) < 1e-3
