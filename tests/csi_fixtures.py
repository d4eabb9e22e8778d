"""Writers of small files in the public CSI sets' formats, independent of msm_jax's readers."""
import os
import struct

import numpy as np


def write_ntu_fi(root, classes_per_split, n_packets=20, seed=0) -> dict:
  """NTU-Fi tree root/{train_amp,test_amp}/<class>/<i>.mat; returns {path: (342, T) array}."""
  import scipy.io
  rng = np.random.default_rng(seed)
  written = {}
  for split, classes in classes_per_split.items():
    for name, count in classes.items():
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(count):
        array = rng.uniform(1.0, 40.0, (342, n_packets)).astype(np.float32)
        path = os.path.join(folder, f"{name}{i}.mat")
        scipy.io.savemat(path, {"CSIamp": array})
        written[path] = array
  return written


def write_mat73(path, variables) -> None:
  """A MATLAB v7.3 file: HDF5 behind a 512-byte user block holding MATLAB's 128-byte header,
  arrays stored transposed (column-major) as MATLAB does."""
  import h5py
  with h5py.File(path, "w", userblock_size=512) as f:
    for name, array in variables.items():
      f[name] = np.asarray(array).T
  with open(path, "r+b") as f:
    f.write(mat73_header())


def mat73_header() -> bytes:
  """MATLAB's header of a v7.3 file: text, subsystem offset, version 0x0200, endian mark 'IM'."""
  text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  5 10:00:00 2026 HDF5 schema"
  return text.ljust(116) + bytes(8) + b"\x00\x02IM"


def write_npy(path, array):
  """A NumPy binary under any name (UT-HAR's .csv files are .npy inside)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    np.save(f, array)


def write_ut_har(root, counts, n_time=20, seed=0) -> dict:
  """UT-HAR root/data/X_<split>.csv (N, 1, T, 90) and root/label/y_<split>.csv; returns arrays."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for name, count in counts.items():
    x = rng.uniform(1.0, 30.0, (count, 1, n_time, 90)).astype(np.float32)
    y = rng.integers(0, 7, count).astype(np.float64)  # the release stores float labels
    write_npy(os.path.join(root, "data", f"X_{name}.csv"), x)
    write_npy(os.path.join(root, "label", f"y_{name}.csv"), y)
    arrays[name] = (x, y)
  return arrays


def bfee_record(csi, antenna_sel, timestamp=0, agc=30) -> bytes:
  """One Intel 5300 0xBB record of raw int8 CSI (30, Nrx, Ntx) complex, encoded bit by bit with
  Python integers (nothing shared with the numpy reader)."""
  n_rx, n_tx = csi.shape[1:]
  stream, position = 0, 0
  for k in range(30):
    stream |= 0b101 << position  # padding bits must be ignored, so set some
    position += 3
    for rx in range(n_rx):
      for tx in range(n_tx):
        for part in (int(csi[k, rx, tx].real), int(csi[k, rx, tx].imag)):
          stream |= (part & 0xFF) << position
          position += 8
  size = (30 * (n_rx * n_tx * 16 + 3) + 7) // 8
  header = struct.pack("<IHHBBBBBbBBHH", timestamp, 1, 0, n_rx, n_tx, 40, 41, 42, -92, agc,
                       antenna_sel, size, 0x4101)
  body = header + stream.to_bytes(size, "little")
  return struct.pack(">H", len(body) + 1) + bytes([0xBB]) + body


def write_dat(path, csi_packets, antenna_sel) -> None:
  """An Intel 5300 log of int8 CSI (T, 30, Nrx, Ntx) with a non-CSI record in between;
  antenna_sel is one value for every record or a sequence of T, one per record."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  selections = np.broadcast_to(antenna_sel, len(csi_packets))
  other = b"\x00\x05\xc1" + b"abcd"  # a 5-byte record of another code, which readers skip
  with open(path, "wb") as f:
    for t, (csi, selection) in enumerate(zip(csi_packets, selections)):
      f.write(bfee_record(csi, int(selection), timestamp=1000 * t))
      if t == 0:
        f.write(other)


def random_int8_csi(rng, n_packets, n_rx=3, n_tx=1):
  shape = (n_packets, 30, n_rx, n_tx)
  return (rng.integers(-128, 128, shape) + 1j * rng.integers(-128, 128, shape)).astype(np.complex64)
