"""CSI readers: fixtures in each public format round-trip exactly; bad files name themselves."""
import os
import sys

import numpy as np
import pytest

import csi_fixtures
from msm_jax.data.csi import CsiFileError, intel5300, read_csi, read_recordings, readers



def test_ntu_fi_round_trip_and_sorted_classes(tmp_path):
  # Written in reverse order: the class order must come from sorting, not from the file system.
  written = csi_fixtures.write_ntu_fi(
      tmp_path, {"train_amp": {"walk": 2, "box": 1, "circle": 1}, "test_amp": {"walk": 1}})
  for path, array in written.items():
    recording = read_csi(path)
    assert recording.amplitude.dtype == np.float32 and recording.amplitude.shape == (3, 114, 20)
    np.testing.assert_array_equal(recording.amplitude, array.reshape(3, 114, 20))
    np.testing.assert_array_equal(recording.amplitude[1, 5], array[114 + 5])  # antenna-major rows
    assert recording.info["class"] == os.path.basename(os.path.dirname(path))
  classes, files = readers.ntu_fi_files(str(tmp_path))
  assert classes == ("box", "circle", "walk")
  assert [label for _, label in files["train"]] == [0, 1, 2, 2]
  assert [label for _, label in files["test"]] == [2]


def test_ntu_fi_bad_files(tmp_path):
  import scipy.io
  wrong = tmp_path / "wrong.mat"
  scipy.io.savemat(wrong, {"CSIamp": np.ones((100, 20))})
  with pytest.raises(CsiFileError, match=r"wrong\.mat: 'CSIamp' has shape \(100, 20\)"):
    read_csi(wrong)
  missing = tmp_path / "missing.mat"
  scipy.io.savemat(missing, {"other": np.ones((342, 20))})
  with pytest.raises(CsiFileError,
                     match=r"missing\.mat: has no 'CSIamp' variable; it has \['other'\]"):
    read_csi(missing)
  truncated = tmp_path / "truncated.mat"
  truncated.write_bytes(wrong.read_bytes()[:300])  # a v5 header, then the data stops
  with pytest.raises(CsiFileError, match=r"truncated\.mat: is not a readable MATLAB file"):
    read_csi(truncated)
  garbage = tmp_path / "garbage.mat"
  garbage.write_bytes(b"not a mat file at all" * 10)
  with pytest.raises(CsiFileError, match=r"garbage\.mat: is not a readable MATLAB file"):
    read_csi(garbage)
  csi_fixtures.write_ntu_fi(tmp_path / "set", {"train_amp": {"box": 1}, "test_amp": {"jump": 1}})
  with pytest.raises(CsiFileError, match=r"test_amp/jump: class 'jump' is not a train class"):
    readers.ntu_fi_files(str(tmp_path / "set"))
  with pytest.raises(CsiFileError, match=r"unknown\.txt: has an unknown CSI file type"):
    (tmp_path / "unknown.txt").write_text("x")
    read_csi(tmp_path / "unknown.txt")


def test_ntu_fi_matlab_v73_files(tmp_path, monkeypatch):
  pytest.importorskip("h5py")
  array = np.random.default_rng(1).uniform(1, 40, (342, 20)).astype(np.float32)
  path = tmp_path / "v73.mat"
  csi_fixtures.write_mat73(path, {"CSIamp": array})
  np.testing.assert_array_equal(read_csi(path).amplitude, array.reshape(3, 114, 20))
  path.write_bytes(path.read_bytes()[:2000])  # cut inside the HDF5 data
  with pytest.raises(CsiFileError, match=r"v73\.mat: is not a readable MATLAB v7\.3 \(HDF5\) "
                                         r"file \(.*truncated"):
    read_csi(path)
  monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
  with pytest.raises(CsiFileError, match=r"v73\.mat: is a MATLAB v7\.3 \(HDF5\) file; reading it "
                                         r"needs h5py"):
    read_csi(path)


def test_ut_har_round_trip(tmp_path):
  arrays = csi_fixtures.write_ut_har(tmp_path, {"train": 3, "val": 2, "test": 2})
  x, y = arrays["train"]
  recordings = read_recordings(tmp_path / "data" / "X_train.csv")
  assert len(recordings) == 3
  for i, recording in enumerate(recordings):
    assert recording.amplitude.shape == (3, 30, 20)
    # column = antenna * 30 + subcarrier, rows are time
    np.testing.assert_array_equal(recording.amplitude[2, 7], x[i, 0, :, 2 * 30 + 7])
  np.testing.assert_array_equal(read_csi(tmp_path / "data" / "X_train.csv", index=1).amplitude,
                                recordings[1].amplitude)
  amplitude, labels = readers.ut_har_split(str(tmp_path), "validation")
  np.testing.assert_array_equal(labels, arrays["val"][1].astype(int))
  assert amplitude.shape == (2, 3, 30, 20)
  with pytest.raises(CsiFileError, match=r"X_train\.csv: holds 3 recordings; pass index="):
    read_csi(tmp_path / "data" / "X_train.csv")


def test_ut_har_bad_files(tmp_path):
  csi_fixtures.write_ut_har(tmp_path, {"train": 3})
  csi_fixtures.write_npy(str(tmp_path / "label" / "y_train.csv"), np.array([0.0, 7.0, 1.0]))
  with pytest.raises(CsiFileError, match=r"y_train\.csv: has labels outside the 7 UT-HAR classes"):
    readers.ut_har_split(str(tmp_path), "train")
  csi_fixtures.write_npy(str(tmp_path / "data" / "X_train.csv"), np.ones((3, 20, 89)))
  with pytest.raises(CsiFileError, match=r"X_train\.csv: holds shape \(3, 20, 89\)"):
    readers.ut_har_split(str(tmp_path), "train")
  (tmp_path / "data" / "X_test.csv").write_text("1,2,3\n")  # a real CSV is not the release format
  with pytest.raises(CsiFileError, match=r"X_test\.csv: is not a NumPy binary"):
    read_recordings(tmp_path / "data" / "X_test.csv")


@pytest.mark.parametrize("n_rx,n_tx,antenna_sel,perm", [(3, 1, 0b01_00_10, [2, 0, 1]),
                                                        (2, 2, 0b00_01, [1, 0]),
                                                        (1, 3, 0, [0])])
def test_intel5300_round_trip_with_antenna_permutation(tmp_path, n_rx, n_tx, antenna_sel, perm):
  rng = np.random.default_rng(n_rx * 10 + n_tx)
  raw = csi_fixtures.random_int8_csi(rng, 7, n_rx, n_tx)
  path = tmp_path / "data" / "user3-2-4-5-1-r6.dat"
  csi_fixtures.write_dat(str(path), raw, antenna_sel)
  recording = read_csi(path)
  csi = recording.info["csi"]
  expected = np.empty_like(raw)
  expected[:, :, perm] = raw  # receive chain i is antenna perm[i]
  np.testing.assert_array_equal(csi, expected)
  assert recording.info["antenna_permutation"].tolist() == [perm] * 7
  assert recording.amplitude.shape == (n_rx * n_tx, 30, 7)
  pair = (n_rx - 1) * n_tx + (n_tx - 1)  # rx-major pairs
  np.testing.assert_allclose(recording.amplitude[pair],
                             np.maximum(np.abs(expected[:, :, -1, -1]), 0.5).T, rtol=1e-6)
  assert recording.info["timestamp_low"].tolist() == [1000 * t for t in range(7)]
  assert recording.info["noise"][0] == -92 and recording.info["skipped_records"] == 0
  assert {k: recording.info[k] for k in intel5300.WIDAR_FIELDS} == {
      "user": 3, "gesture": 2, "location": 4, "orientation": 5, "repetition": 1, "receiver": 6}


def test_intel5300_permutes_each_record_by_its_own_antenna_sel(tmp_path):
  # Antenna selection can change between packets; a non-permutation (0) is left as is, as
  # read_bf_file.m does.
  selections = [0b01_00_10, 0b10_00_01, 0b00_01_10, 0b10_01_00, 0]
  perms = [[2, 0, 1], [1, 0, 2], [2, 1, 0], [0, 1, 2], [0, 1, 2]]
  raw = csi_fixtures.random_int8_csi(np.random.default_rng(4), len(selections))
  path = tmp_path / "capture.dat"
  csi_fixtures.write_dat(str(path), raw, selections)
  recording = read_csi(path)
  assert recording.info["antenna_permutation"].tolist() == perms
  for t, perm in enumerate(perms):
    expected = np.empty_like(raw[t])
    expected[:, perm] = raw[t]
    np.testing.assert_array_equal(recording.info["csi"][t], expected)


def test_intel5300_bad_files(tmp_path):
  raw = csi_fixtures.random_int8_csi(np.random.default_rng(0), 3)
  path = tmp_path / "user1-1-1-1-1-r1.dat"
  csi_fixtures.write_dat(str(path), raw, 0b10_01_00)
  data = path.read_bytes()
  path.write_bytes(data[:-5])
  with pytest.raises(CsiFileError, match=r"user1-1-1-1-1-r1\.dat: truncated record at byte \d+"):
    read_csi(path)
  record = bytearray(csi_fixtures.bfee_record(raw[0], 0))
  record[3 + 16:3 + 18] = (10).to_bytes(2, "little")  # the header's payload length is wrong
  path.write_bytes(bytes(record))
  with pytest.raises(CsiFileError, match=r"declares a 10-byte payload; 3x1 antennas need 192"):
    read_csi(path)
  # A record cut short inside its payload but framed consistently, followed by a whole one: the
  # payload must not run on into the next record's bytes.
  short = csi_fixtures.bfee_record(raw[0], 0)[3:3 + 100]
  path.write_bytes(len(short + b"x").to_bytes(2, "big") + b"\xbb" + short
                   + csi_fixtures.bfee_record(raw[1], 0))
  with pytest.raises(CsiFileError, match=r"r1\.dat: record 0 holds 100 bytes; its header and "
                                         r"192-byte CSI payload need 212"):
    read_csi(path)
  path.write_bytes(csi_fixtures.bfee_record(raw[0], 0) + b"\x00\x05\xbbabcd")
  with pytest.raises(CsiFileError, match=r"r1\.dat: 0xBB record at byte 215 holds 4 bytes, fewer "
                                         r"than the 20-byte bfee header"):
    read_csi(path)
  path.write_bytes(b"\x00\x05\xc1abcd")
  with pytest.raises(CsiFileError, match=r"r1\.dat: holds no CSI \(0xBB"):
    read_csi(path)
  assert intel5300.widar_fields("capture.dat") == {}


# (Nrx, Ntx, antenna_sel of each record): every valid selection of the antennas, several records.
CSIREAD_CASES = [(3, 1, [0b01_00_10] * 3), (2, 2, [0b00_01, 0b01_00, 0b00_01]),
                 (3, 2, [0b10_00_01, 0b00_01_10, 0b10_01_00, 0b01_10_00]), (1, 3, [0, 0]),
                 (3, 3, [0b00_10_01, 0b01_00_10])]


@pytest.mark.parametrize("n_rx,n_tx,selections", CSIREAD_CASES)
def test_intel5300_agrees_with_csiread(tmp_path, n_rx, n_tx, selections):
  """csiread (an independent C++ Intel 5300 parser) is in setup.py's test extra, so this runs
  wherever the tests' requirements are installed; it skips only where csiread is not (e.g. a
  platform without a csiread wheel)."""
  csiread = pytest.importorskip("csiread")
  raw = csi_fixtures.random_int8_csi(np.random.default_rng(n_rx * 3 + n_tx), len(selections),
                                     n_rx, n_tx)
  path = tmp_path / f"capture{n_rx}x{n_tx}.dat"
  csi_fixtures.write_dat(str(path), raw, selections)
  reference = csiread.Intel(str(path), nrxnum=3, ntxnum=3, if_report=False)
  reference.read()
  ours = read_csi(path).info
  assert reference.count == len(selections)
  assert reference.Nrx.tolist() == [n_rx] * len(selections)
  np.testing.assert_array_equal(ours["csi"], reference.csi[:, :, :n_rx, :n_tx])
  np.testing.assert_array_equal(ours["antenna_permutation"], reference.perm[:, :n_rx])
  for field in ("timestamp_low", "bfee_count", "rssi_a", "rssi_b", "rssi_c", "noise", "agc"):
    np.testing.assert_array_equal(ours[field], getattr(reference, field))
  # The selections did move the receive chains (one receive antenna has nothing to move).
  assert np.array_equal(ours["csi"], raw) == (n_rx == 1)


def test_nonfinite_csi_files_are_refused_naming_them(tmp_path):
  written = csi_fixtures.write_ntu_fi(tmp_path / "ntu", {"train_amp": {"walk": 1}})
  (path, array), = written.items()
  array[7, 3] = np.inf
  import scipy.io
  scipy.io.savemat(path, {"CSIamp": array})
  with pytest.raises(CsiFileError, match=r"walk0\.mat: 1 of the 6840 'CSIamp' values are NaN or "
                                         r"infinite, the first at index \(7, 3\)\."):
    read_csi(path)
  x = csi_fixtures.write_ut_har(tmp_path / "ut", {"train": 3})["train"][0]
  x[2, 0, 5, 40] = np.nan
  csi_fixtures.write_npy(str(tmp_path / "ut" / "data" / "X_train.csv"), x)
  with pytest.raises(CsiFileError, match=r"X_train\.csv: 1 of the .* values \(index: example, "
                                         r"time, column\) are NaN .* index \(2, 5, 40\)\."):
    read_recordings(tmp_path / "ut" / "data" / "X_train.csv")
