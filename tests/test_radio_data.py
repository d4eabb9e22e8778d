"""Radio recordings (SigMF / .npy), MathWorks frames, radio_pretrain and radio_segmentation."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from msm_jax.data import parallel, radio_pretrain, radio_segmentation
from msm_jax.data.radio import mathworks
from msm_jax.data.radio.recordings import (MappedIQ, Recording, RecordingError, read_recording,
                                           recording_spectrograms, recording_windows)
from msm_jax.data.radio.stft import power_spectrogram, reduce_power, spec_for, stft

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 3.84e6
WINDOW = int(round(RATE * 0.016))  # samples in the default 16 ms window
CLASSES = ("noise", "lte", "nr")
DEFAULT_ANNOTATIONS = [{"core:sample_start": 10, "core:sample_count": 100, "core:label": "x"}]


def write_sigmf(base, iq, datatype, captures=None, annotations=None):
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
  meta = {"global": {"core:datatype": datatype, "core:sample_rate": RATE},
          "captures": [{"core:sample_start": 0, "core:frequency": 3.5e9}] if captures is None
                      else captures,
          "annotations": DEFAULT_ANNOTATIONS if annotations is None else annotations}
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
    assert isinstance(recording.iq, MappedIQ) and len(recording.iq) == 1000
    read = recording.iq[:]
    assert read.dtype == np.complex64 and read.shape == (1000,)
    np.testing.assert_allclose(read, iq, atol=tolerance)
    np.testing.assert_array_equal(recording.iq[100:250], read[100:250])
    np.testing.assert_array_equal(np.asarray(recording.iq), read)
    assert recording.sample_rate == RATE and recording.center_frequency == 3.5e9
    assert recording.annotations[0]["core:label"] == "x"


def test_npy_recordings_and_sidecar(tmp_path):
  iq = random_iq(500)
  np.save(tmp_path / "a.npy", iq.astype(np.complex128))
  a = read_recording(str(tmp_path / "a.npy"), sample_rate=RATE)
  assert a.sample_rate == RATE and a.iq[:].dtype == np.complex64
  np.testing.assert_allclose(a.iq[:], iq, atol=1e-7)
  np.save(tmp_path / "b.npy", np.stack([iq.real, iq.imag]))
  (tmp_path / "b.json").write_text(json.dumps({"sample_rate": RATE, "center_frequency": 2.4e9}))
  b = read_recording(str(tmp_path / "b.npy"))
  np.testing.assert_allclose(b.iq[:], iq, atol=1e-7)
  np.testing.assert_allclose(b.iq[200:300], iq[200:300], atol=1e-7)
  assert b.center_frequency == 2.4e9
  np.save(tmp_path / "c.npy", np.stack([iq.real, iq.imag], axis=1))
  c = read_recording(str(tmp_path / "c.npy"), RATE)
  np.testing.assert_allclose(c.iq[450:], iq[450:], atol=1e-7)


def test_recordings_are_memory_mapped_and_read_when_sliced(tmp_path):
  iq = random_iq(3 * WINDOW + 7)
  base = str(tmp_path / "mapped")
  write_sigmf(base, iq, "cf32_le")
  np.save(tmp_path / "mapped.npy", iq)
  recordings = [read_recording(base + ".sigmf-meta"),
                read_recording(str(tmp_path / "mapped.npy"), sample_rate=RATE)]
  # Changed on disk after opening: a recording read at open would not see it, a mapped one does.
  new = np.full(10, 0.25 - 0.5j, np.complex64)
  with open(base + ".sigmf-data", "r+b") as f:
    f.seek(500 * 8)
    f.write(new.tobytes())
  on_disk = np.load(tmp_path / "mapped.npy", mmap_mode="r+")
  on_disk[500:510] = new
  on_disk.flush()
  for recording in recordings:
    np.testing.assert_array_equal(recording.iq[500:510], new)
    starts = [start for start, _ in recording_windows(recording, (16, 32, 1))]
    assert starts == [0, WINDOW, 2 * WINDOW]  # whole windows only: the 7-sample tail is dropped
    with pytest.raises(TypeError, match="contiguous slices"):
      recording.iq[::2]


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


def test_mathworks_frames_reduce_like_the_generators(tmp_path):
  from scipy import io
  # A frame holding the generators' own STFT power (frames x n_fft, frames not a multiple of the
  # rows) reduces exactly as the generators reduce it: crop the trailing frames, average blocks.
  spec = spec_for(16, 32)
  iq = random_iq(spec.samples(4) + 3 * spec.hop)
  x = stft(iq, spec)
  power = x.real ** 2 + x.imag ** 2
  labels = np.zeros(power.shape, np.uint8)
  io.savemat(tmp_path / "stft.mat", {"rxSpectrogram": power.astype(np.float64)})
  io.savemat(tmp_path / "stft_label.mat", {"label": labels})
  got, _ = mathworks.read_frame(str(tmp_path / "stft.mat"), str(tmp_path / "stft_label.mat"),
                                (16, 32, 1), CLASSES)
  np.testing.assert_allclose(got[..., 0], reduce_power(power, spec), rtol=1e-5)
  np.testing.assert_allclose(got[..., 0], power_spectrogram(iq, spec), rtol=1e-5)
  # Sizes that do not divide: 37 x 45 -> 8 x 8 keeps rows 0..31 (blocks of 4) and the central
  # columns 2..41 (blocks of 5); labels are those at the block centres, never averaged.
  power = np.random.default_rng(1).uniform(1, 2, (37, 45))
  labels = np.zeros((37, 45), np.uint8)
  labels[:, 30:] = 255
  labels[:, 4:10] = 127
  io.savemat(tmp_path / "odd.mat", {"rxSpectrogram": power})
  io.savemat(tmp_path / "odd_label.mat", {"label": labels})
  got, ids = mathworks.read_frame(str(tmp_path / "odd.mat"), str(tmp_path / "odd_label.mat"),
                                  (8, 8, 1), CLASSES)
  expected = power[:32, 2:42].reshape(8, 4, 8, 5).mean(axis=(1, 3))
  np.testing.assert_allclose(got[..., 0], expected, rtol=1e-6)
  centres = labels[np.ix_(np.arange(8) * 4 + 2, 2 + np.arange(8) * 5 + 2)]
  np.testing.assert_array_equal(ids, np.select([centres == 255, centres == 127], [1, 2], 0))
  assert list(ids[0]) == [2, 2, 0, 0, 0, 0, 1, 1]  # columns 4, 9, ..., 39: NR on 4-9, LTE 30-44
  with pytest.raises(RecordingError, match=r"odd\.mat: a 37 x 45 frame is smaller than the 64 x 8 "
                     r"requested.*at most 37 x 45"):
    mathworks.read_frame(str(tmp_path / "odd.mat"), str(tmp_path / "odd_label.mat"), (64, 8, 1),
                         CLASSES)


def test_mathworks_png_frames_must_be_grey(tmp_path):
  from PIL import Image
  grey = np.random.default_rng(2).integers(0, 256, (16, 16), dtype=np.uint8)
  Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "g_label.png")
  Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "c_label.png")
  Image.fromarray(grey).save(tmp_path / "g.png")
  from_grey, _ = mathworks.read_frame(str(tmp_path / "g.png"), str(tmp_path / "g_label.png"),
                                      (8, 8, 1), CLASSES)
  # 8-bit grey levels span PNG_DB_RANGE dB; a grey RGB image is the same image.
  db = grey / 255 * mathworks.PNG_DB_RANGE
  np.testing.assert_allclose(from_grey[..., 0], (10 ** (db / 10)).reshape(8, 2, 8, 2).mean(
      axis=(1, 3)), rtol=1e-5)
  Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "g.png")
  np.testing.assert_array_equal(mathworks.read_frame(str(tmp_path / "g.png"),
                                                     str(tmp_path / "g_label.png"), (8, 8, 1),
                                                     CLASSES)[0], from_grey)
  colour = np.stack([grey, grey // 2, 255 - grey], axis=-1)  # what a colormap makes
  Image.fromarray(colour).save(tmp_path / "c.png")
  with pytest.raises(RecordingError, match=r"c\.png: a colour image"):
    mathworks.read_frame(str(tmp_path / "c.png"), str(tmp_path / "c_label.png"), (8, 8, 1),
                         CLASSES)


def write_bad_frames(folder):
  """A corrupt PNG, a corrupt .mat and a MATLAB v7.3 .mat (HDF5), each with a good label map."""
  from PIL import Image
  for name in ("bad_png", "bad_mat", "v73"):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(os.path.join(folder, f"{name}_label.png"))
  with open(os.path.join(folder, "bad_png.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
  with open(os.path.join(folder, "bad_mat.mat"), "wb") as f:
    f.write(b"MATLAB 5.0 MAT-file" + bytes(range(256)))
  # MATLAB v7.3: an HDF5 file behind a 512-byte user block opening with the 128-byte MATLAB
  # header, whose version field (bytes 124-125: 0x0200) is what readers check.
  path = os.path.join(folder, "v73.mat")
  header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8)
  header += b"\x00\x02IM"
  try:
    import h5py
    with h5py.File(path, "w", userblock_size=512) as f:
      f["rxSpectrogram"] = np.ones((32, 32))
  except ImportError:
    with open(path, "wb") as f:
      f.write(bytes(1024))
  with open(path, "r+b") as f:
    f.write(header)


def test_unreadable_frames_are_recording_errors_naming_the_file(tmp_path):
  write_bad_frames(str(tmp_path))
  problems = {"bad_png": r"bad_png\.png: not a readable PNG", "v73": r"v73\.mat: a MATLAB v7\.3 "
              r"\(HDF5\) \.mat file.*-v7", "bad_mat": r"bad_mat\.mat: not a readable \.mat file"}
  for name, problem in problems.items():
    spectrogram = str(tmp_path / (name + (".png" if name == "bad_png" else ".mat")))
    with pytest.raises(RecordingError, match=problem):
      mathworks.read_frame(spectrogram, str(tmp_path / f"{name}_label.png"), (16, 16, 1), CLASSES)


def test_radio_segmentation_needs_a_readable_frame_in_every_split(tmp_path):
  frames = tmp_path / "frames"
  write_frames(str(frames), 2)
  with pytest.raises(ValueError, match="2 frame\\(s\\); at least 3 are needed"):
    radio_segmentation.folder_splits(str(frames), 0)
  with pytest.raises(ValueError, match="read, not generated"):
    radio_segmentation.build_params(num_examples=1, shape=(8, 8, 1), seed=0, folder=str(frames),
                                    generator="lte_nr")
  write_bad_frames(str(frames))  # 5 frames: 1 validation, 1 test, 3 train; 3 unreadable
  seed = next(s for s in range(100) if any(
      "bad" in pair[0] or "v73" in pair[0]
      for pair in radio_segmentation.folder_splits(str(frames), s)["validation"]))
  with pytest.raises(ValueError, match="every frame of the validation split is unreadable"):
    radio_segmentation.build(str(tmp_path / "data"), num_examples=1, shape=(16, 16, 1), seed=seed,
                             folder=str(frames), skip_bad=True)


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
  write_bad_frames(frames)
  command = [sys.executable, "-m", "launch.make_dataset", "--dataset=radio_segmentation",
             f"--data_dir={tmp_path / 'data'}", f"--frames={frames}", "--height=16", "--width=16"]
  problems = ("frame_3_label.png is missing", "bad_png.png: not a readable PNG",
              "bad_mat.mat: not a readable .mat", "v73.mat: a MATLAB v7.3")
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  # One line, even though the reader ran inside tensorflow-datasets' build (launch/cli.py).
  last = failed.stderr.strip().splitlines()[-1]
  assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
  assert last.startswith("launch.make_dataset: error: ")
  assert any(problem in last for problem in problems)  # whichever the build met first
  result = subprocess.run(command + ["--skip_bad", f"--data_dir={tmp_path / 'data2'}"], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Skipped 4 bad file(s)" in result.stdout
  assert all(problem in result.stdout for problem in problems)
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
  bad = random_iq(2 * window)
  bad[window + 3] = np.nan + 0j  # bad: a NaN sample, found only when its window is read
  np.save(inputs / "d.npy", bad)
  (inputs / "d.json").write_text(json.dumps({"sample_rate": RATE}))
  command = [sys.executable, "-m", "launch.make_dataset", "--dataset=radio_pretrain",
             f"--recordings={inputs}/*", "--height=16", "--width=32"]
  failed = subprocess.run(command + [f"--data_dir={tmp_path / 'x'}"], cwd=REPO,
                          capture_output=True, text=True)
  assert failed.returncode != 0 and "c.sigmf-data: missing" in failed.stderr
  result = subprocess.run(command + [f"--data_dir={tmp_path / 'data'}", "--skip_bad"], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Skipped 2 bad file(s)" in result.stdout
  assert (f"d.npy: 1 of the {window} samples {window}..{2 * window - 1} are NaN or infinite, the "
          f"first at index {window + 3}.") in result.stdout
  shape = (16, 32, 1)
  source = TfdsSource(name="radio_pretrain", data_dir=str(tmp_path / "data"), split="train",
                      input_shape=shape, seed=0, shuffle_buffer=1, prefetch=1)
  images = np.concatenate([b["image"] for b in source.epoch(4)])
  assert images.shape == (10, 16, 32, 1)  # 12 windows: 8 = validation, 9 = test
  # The tf.data STFT of stored windows == the numpy spectrograms of the same windows.
  iq = np.concatenate([read_recording(str(inputs / "a.sigmf-meta")).iq[:],
                       read_recording(str(inputs / "b.npy")).iq[:5 * window]])
  expected = recording_spectrograms(
      Recording(iq=iq, sample_rate=RATE, center_frequency=None, annotations=[], path="x"), shape)
  expected = standardize(expected[[i for i in range(12) if i % 10 < 8]], source.stats["mean"],
                         source.stats["std"])
  distance = np.abs(images[:, None] - expected[None]).reshape(10, 10, -1).max(axis=-1)
  assert distance.min(axis=1).max() < 2e-4  # every image is one window (tfds orders by key hash)
  assert sorted(distance.argmin(axis=1)) == list(range(10))
  assert abs(images.mean()) < 1e-3


def test_radio_pretrain_recordings_keep_their_origin_and_are_read_once(tmp_path, monkeypatch):
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  inputs = tmp_path / "in"
  inputs.mkdir()
  a = random_iq(7 * WINDOW + 5)
  write_sigmf(str(inputs / "a"), a, "cf32_le",
              captures=[{"core:sample_start": 0, "core:frequency": 3.5e9},
                        {"core:sample_start": 3 * WINDOW, "core:frequency": 3.6e9}],
              annotations=[
                  {"core:sample_start": 2 * WINDOW + 5, "core:sample_count": 100,
                   "core:label": "burst"},
                  {"core:sample_start": 6 * WINDOW - 10, "core:sample_count": 20,
                   "core:label": "edge"},  # the last 10 samples of window 5, the first 10 of 6
                  {"core:sample_start": 4 * WINDOW + 1, "core:label": "open"}])  # to the end
  write_sigmf(str(inputs / "b"), random_iq(5 * WINDOW, seed=1), "ci16_le", captures=[],
              annotations=[])
  read = []
  original = MappedIQ.__getitem__
  monkeypatch.setattr(MappedIQ, "__getitem__",
                      lambda self, key: read.append(original(self, key)) or read[-1])
  # A glob matching only the .sigmf-data files names the recordings too.
  params, skipped = radio_pretrain.recordings_params(str(inputs / "*.sigmf-data"),
                                                     shape=(16, 32, 1))
  assert skipped == [] and [count for _, count in params["files"]] == [7, 5]
  assert read == []  # counting windows reads no sample
  version_dir, _ = radio_pretrain.build_from_recordings(str(tmp_path / "data"),
                                                        str(inputs / "*.sigmf-data"),
                                                        shape=(16, 32, 1))
  assert sum(map(len, read)) == 12 * WINDOW  # every window once, whatever its split
  builder = tfds.builder_from_directory(version_dir)
  examples = {}
  for split in ("train", "validation", "test"):
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
      key = (os.path.basename(example["source"].decode()), int(example["start"]))
      assert key not in examples
      examples[key] = example
  assert sorted(examples) == sorted([("a.sigmf-meta", k * WINDOW) for k in range(7)]
                                    + [("b.sigmf-meta", k * WINDOW) for k in range(5)])
  labels = {k: [x["core:label"] for x in json.loads(examples["a.sigmf-meta", k * WINDOW][
      "annotations"])] for k in range(7)}
  assert labels == {0: [], 1: [], 2: ["burst"], 3: [], 4: ["open"], 5: ["edge", "open"],
                    6: ["edge", "open"]}
  assert [examples["a.sigmf-meta", k * WINDOW]["center_frequency"] for k in range(7)] == [
      3.5e9] * 3 + [3.6e9] * 4
  b = examples["b.sigmf-meta", 2 * WINDOW]
  assert np.isnan(b["center_frequency"]) and json.loads(b["annotations"]) == []
  np.testing.assert_array_equal(examples["a.sigmf-meta", 4 * WINDOW]["iq"],
                                a[4 * WINDOW:5 * WINDOW])


def test_generated_capture_settings_are_checked():
  base = dict(num_examples=1, shape=(16, 32, 1), seed=0)
  params = radio_pretrain.build_params(generator="radio_scene", **base)
  assert params["capture"] == {"sample_rate": 61.44e6, "frame_seconds": 0.016}
  with pytest.raises(ValueError, match="sample_rate=5e\\+07 Hz: use a multiple of 7.68 Msps"):
    radio_pretrain.build_params(generator="radio_scene", capture={"sample_rate": 50e6}, **base)
  with pytest.raises(ValueError, match="frame_seconds=0.05: use 0.01 to 0.04"):
    radio_segmentation.build_params(capture={"frame_seconds": 0.05}, **base)
  with pytest.raises(ValueError, match="'synthetic' draws spectrograms directly; .* IQ-level "
                     "generators \\(lte_nr, lte_nr_holdout, radio_scene\\)"):
    radio_pretrain.build_params(generator="synthetic", capture={"frame_seconds": 0.02}, **base)
  with pytest.raises(ValueError, match="a 10 ms frame at 30.72 Msps has 307200 samples, fewer"):
    radio_pretrain.build_params(generator="lte_nr", capture={"sample_rate": 30.72e6,
                                                             "frame_seconds": 0.01},
                                num_examples=1, shape=(700, 32, 1), seed=0)


def make_dataset(*flags):
  return subprocess.run([sys.executable, "-m", "launch.make_dataset", *flags], cwd=REPO,
                        capture_output=True, text=True)


def stored(version_dir):
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  builder = tfds.builder_from_directory(str(version_dir))
  return builder, {split: list(tfds.as_numpy(builder.as_dataset(split=split)))
                   for split in ("train", "validation", "test")}


def test_make_dataset_radio_pretrain_generates_realistic_scenes_at_a_set_capture(tmp_path):
  capture = {"sample_rate": 30.72e6, "frame_seconds": 0.012}
  result = make_dataset("--dataset=radio_pretrain", f"--data_dir={tmp_path}", "--num_examples=2",
                        "--height=8", "--width=16", "--capture_rate=30.72e6",
                        "--frame_seconds=0.012", "--seed=3")
  assert result.returncode == 0, result.stderr[-2000:]
  builder, splits = stored(tmp_path / "radio_pretrain" / "1.0.0")
  # make_dataset's default generator is the IQ-level radio_scene, at the capture asked for.
  assert builder.info.metadata["generator"] == "radio_scene"
  assert builder.info.metadata["capture"] == capture
  train = sorted(e["spectrogram"].tobytes() for e in splits["train"])
  expected = [parallel.example("radio_scene", (8, 16, 1), 3, 0, "train", i, capture=capture)
              for i in range(2)]
  assert train == sorted(e["spectrogram"].tobytes() for e in expected)
  default = parallel.example("radio_scene", (8, 16, 1), 3, 0, "train", 0)["spectrogram"]
  assert default.tobytes() not in train  # the capture settings changed the scene


def test_make_dataset_rejects_unknown_generators_and_misplaced_flags(tmp_path):
  unknown = make_dataset("--dataset=radio_pretrain", f"--data_dir={tmp_path}", "--generator=wifi")
  assert unknown.returncode != 0
  assert "--generator" in unknown.stderr and "lte_nr" in unknown.stderr
  assert "radio_scene" in unknown.stderr
  alone = make_dataset("--dataset=radio_pretrain", f"--data_dir={tmp_path}",
                       f"--recordings={tmp_path}/*", "--generator=lte_nr")
  assert alone.returncode != 0 and "give their number too, --num_examples=N" in alone.stderr
  csi = make_dataset("--dataset=csi_har", f"--data_dir={tmp_path}", "--frame_seconds=0.02")
  assert csi.returncode != 0
  assert "--frame_seconds: only for radio_pretrain and radio_segmentation" in csi.stderr
  read = make_dataset("--dataset=radio_segmentation", f"--data_dir={tmp_path}",
                      f"--frames={tmp_path}", "--num_eval_examples=4")
  assert read.returncode != 0 and "--num_eval_examples sizes generated" in read.stderr


def test_make_dataset_radio_pretrain_mixes_recordings_and_generated_scenes(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  iq = random_iq(12 * WINDOW)
  np.save(inputs / "r.npy", iq)
  capture = {"sample_rate": 30.72e6, "frame_seconds": 0.01}
  result = make_dataset("--dataset=radio_pretrain", f"--data_dir={tmp_path / 'data'}",
                        f"--recordings={inputs}/*.npy", f"--sample_rate={RATE}", "--height=16",
                        "--width=32", "--num_examples=2", "--generator=lte_nr",
                        "--capture_rate=30.72e6", "--frame_seconds=0.01")
  assert result.returncode == 0, result.stderr[-2000:]
  builder, splits = stored(tmp_path / "data" / "radio_pretrain" / "1.0.0")
  assert builder.info.metadata["generator"] == "lte_nr"
  assert builder.info.metadata["capture"] == capture
  assert {split: len(examples) for split, examples in splits.items()} == {
      "train": 10 + 2, "validation": 1 + 1, "test": 1 + 1}
  spec = spec_for(16, 32)
  for split_id, (split, examples) in enumerate(splits.items()):
    generated = [e for e in examples if e["source"] == b"generator:lte_nr"]
    assert all(e["start"] == -1 and np.isnan(e["center_frequency"]) for e in generated)
    expected = [parallel.example("lte_nr", (16, 32, 1), 0, split_id, split, i, capture=capture)
                for i in range(len(generated))]
    assert sorted(e["spectrogram"].tobytes() for e in generated) == sorted(
        e["spectrogram"].tobytes() for e in expected)
    for example in examples:
      if example["start"] >= 0:  # a window of the recording, through the generators' STFT
        window = iq[example["start"]:example["start"] + WINDOW]
        np.testing.assert_allclose(example["spectrogram"][..., 0],
                                   power_spectrogram(window, spec), rtol=1e-6)


def test_generator_speed_reports_scenes_per_second():
  command = [sys.executable, "-m", "launch.generator_speed", "--generators=lte_nr", "--scenes=16",
             "--workers=2"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  measured = re.findall(r"lte_nr +(1 process|pool of 2 workers) +([\d.]+) scenes/s +([\d.]+) "
                        r"CPU-s/scene", result.stdout)
  assert [mode for mode, _, _ in measured] == ["1 process", "pool of 2 workers"]
  assert all(float(rate) > 0 and float(cpu) > 0 for _, rate, cpu in measured)
  assert "lte_nr at 256x256x1:" in result.stdout  # radio_segmentation's default size
  short = subprocess.run(command[:-2] + ["--scenes=4", "--workers=2"], cwd=REPO,
                         capture_output=True, text=True)
  assert short.returncode != 0 and "--scenes=4: at least 16" in short.stderr


def test_nonfinite_recordings_are_refused_by_make_dataset_and_predict(tmp_path):
  from types import SimpleNamespace
  import ml_collections
  from msm_jax.finetune.predict import Finetuned, recording_inputs
  iq = random_iq(3 * WINDOW + 100)  # three 16 ms windows and a 100-sample tail
  write_sigmf(str(tmp_path / "good"), iq, "cf32_le")
  iq[2 * WINDOW + 7] = complex(np.inf, 0)
  write_sigmf(str(tmp_path / "bad"), iq, "cf32_le")
  np.save(tmp_path / "nan.npy", np.where(np.arange(len(iq)) == 5, np.nan, iq).astype(np.complex64))
  config = ml_collections.ConfigDict({"task": "segmentation", "input_shape": (16, 32, 1)})
  model = Finetuned(config, SimpleNamespace(frontend=None), params=None)
  power, items = recording_inputs(model, str(tmp_path / "good.sigmf-meta"))
  assert power.shape == (3, 16, 32, 1)
  # Starts are whole windows apart, not (the whole recording / windows) apart.
  assert [item["start_s"] for item in items] == pytest.approx([0, 0.016, 0.032])
  with pytest.raises(RecordingError, match=rf"bad\.sigmf-data: 1 of the {WINDOW} samples "
                                           rf".*first at index {2 * WINDOW + 7}\."):
    recording_inputs(model, str(tmp_path / "bad.sigmf-meta"))
  with pytest.raises(RecordingError, match=r"nan\.npy: 1 of .* NaN or infinite, .* index 5\."):
    recording_inputs(model, str(tmp_path / "nan.npy"), RATE)
  # radio_pretrain: the windows are read while tfds builds, so the build fails naming the file;
  # with skip_bad every window is read up front, and the file is left out and reported.
  for name in ("bad", "nan"):
    np.save(tmp_path / f"{name}_pad.npy", random_iq(10 * WINDOW))
  with pytest.raises(RecordingError, match=r"nan\.npy: 1 of"):
    radio_pretrain.build_from_recordings(str(tmp_path / "data"), str(tmp_path / "nan*.npy"),
                                         shape=(16, 32, 1), sample_rate=RATE)
  params, skipped = radio_pretrain.recordings_params(str(tmp_path / "*"), shape=(16, 32, 1),
                                                     sample_rate=RATE, skip_bad=True)
  assert [os.path.basename(path) for path, _ in params["files"]] == [
      "bad_pad.npy", "good.sigmf-meta", "nan_pad.npy"]
  assert [problem.split(":")[0] for problem in skipped] == [
      str(tmp_path / "bad.sigmf-data"), str(tmp_path / "nan.npy")]


def test_nonfinite_mathworks_frames_are_refused(tmp_path):
  from scipy import io
  write_frames(tmp_path, 1)
  (spectrogram, label), = mathworks.find_frames(str(tmp_path))
  values = io.loadmat(spectrogram)["rxSpectrogram"]
  values[3, 4] = np.nan
  io.savemat(spectrogram, {"rxSpectrogram": values})
  with pytest.raises(RecordingError, match=r"\.mat: 1 of the 1024 values are NaN or infinite, "
                                           r"the first at index \(3, 4\)\."):
    mathworks.read_frame(spectrogram, label, (16, 16, 1), CLASSES)
