"""Readers of the public WiFi CSI sets' files, and `read_csi` dispatching on the file type.

  NTU-Fi HAR / HumanID  ROOT/{train_amp,test_amp}/<class>/*.mat, key 'CSIamp' (342, 2000) =
                        3 antennas x 114 subcarriers stacked on the first axis, x packets. Classes
                        are the sorted class-folder names (never directory-listing order).
  UT-HAR                ROOT/data/X_{train,val,test}.csv and ROOT/label/y_{...}.csv: NumPy .npy
                        binaries despite the name; X (N, [1,] 250, 90), columns antenna-major
                        (column = antenna * 30 + subcarrier), y (N,) class ids of UT_HAR_CLASSES.
  Widar3.0              Intel 5300 .dat logs (see intel5300.py).
Every reader returns amplitude float32 (antennas, subcarriers, packets); every problem is a
CsiFileError naming the file, NaN or infinite values included (Intel 5300 logs hold integers).
"""
import os

import numpy as np

from msm_jax.data.csi import intel5300
from msm_jax.data.csi.recording import CsiFileError, CsiRecording
from msm_jax.data.normalize import nonfinite

NTU_FI_SUBCARRIERS = 114
NTU_FI_SPLITS = {"train": "train_amp", "test": "test_amp"}
# In the release's label order, spelt as the simulator's activities so that simulated and real
# UT-HAR datasets share their label names.
UT_HAR_CLASSES = ("lie_down", "fall", "walk", "pickup", "run", "sit_down", "stand_up")
UT_HAR_SPLITS = {"train": "train", "validation": "val", "test": "test"}
UT_HAR_SUBCARRIERS, UT_HAR_ANTENNAS = 30, 3


def _load_mat(path) -> dict:
  import scipy.io  # lazily: only NTU-Fi needs it
  try:
    return scipy.io.loadmat(path)
  except NotImplementedError:  # MATLAB v7.3 files are HDF5
    return _load_mat_v73(path)
  except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError) as error:
    # MatReadError (a truncated or empty file) derives from Exception alone.
    raise CsiFileError(path, f"is not a readable MATLAB file ({error}).") from None


def _load_mat_v73(path) -> dict:
  """The arrays of a MATLAB v7.3 (HDF5) file, transposed back to MATLAB's (row, column) order."""
  try:
    import h5py  # lazily, and optional: only v7.3 files need it
  except ImportError:
    raise CsiFileError(path, "is a MATLAB v7.3 (HDF5) file; reading it needs h5py "
                             "(pip install h5py).") from None
  try:
    with h5py.File(path, "r") as f:
      return {key: np.asarray(f[key]).T for key in f.keys() if isinstance(f[key], h5py.Dataset)}
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise CsiFileError(path, f"is not a readable MATLAB v7.3 (HDF5) file ({error}).") from None


def _require_finite(path, values, what: str) -> None:
  problem = nonfinite(values, what)
  if problem:
    raise CsiFileError(path, f"{problem}.")


def read_ntu_fi(path) -> CsiRecording:
  """One NTU-Fi .mat: amplitude (antennas, 114, packets); info['class'] = the parent folder."""
  content = _load_mat(path)
  if "CSIamp" not in content:
    names = sorted(k for k in content if not k.startswith("__"))
    raise CsiFileError(path, f"has no 'CSIamp' variable; it has {names}.")
  array = np.asarray(content["CSIamp"])
  if array.ndim != 2 or array.shape[0] % NTU_FI_SUBCARRIERS or not array.size:
    raise CsiFileError(path, f"'CSIamp' has shape {array.shape}; expected (antennas x "
                             f"{NTU_FI_SUBCARRIERS}, packets), e.g. (342, 2000).")
  _require_finite(path, array, "'CSIamp' values")
  amplitude = array.astype(np.float32).reshape(-1, NTU_FI_SUBCARRIERS, array.shape[1])
  folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return CsiRecording(amplitude, {"format": "ntu_fi", "class": folder})


def ntu_fi_files(root: str) -> tuple[tuple[str, ...], dict]:
  """(classes, {split: [(path, class id)]}) of an NTU-Fi HAR/HumanID folder, sorted throughout.
  Classes come from train_amp; a test class folder missing from train is a CsiFileError."""
  folders = {split: os.path.join(root, name) for split, name in NTU_FI_SPLITS.items()}
  if not os.path.isdir(folders["train"]):
    raise CsiFileError(root, f"is not an NTU-Fi folder: {folders['train']} does not exist.")
  classes = tuple(sorted(d for d in os.listdir(folders["train"])
                         if os.path.isdir(os.path.join(folders["train"], d))))
  files = {}
  for split, folder in folders.items():
    files[split] = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
      if name not in classes:
        raise CsiFileError(os.path.join(folder, name), f"class {name!r} is not a train class "
                                                       f"{classes}.")
      names = sorted(os.listdir(os.path.join(folder, name)))
      files[split] += [(os.path.join(folder, name, f), classes.index(name))
                       for f in names if f.endswith(".mat")]
  return classes, files


def _load_npy(path) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as error:
    raise CsiFileError(path, f"is not a NumPy binary (UT-HAR .csv files are .npy inside): "
                             f"{error}") from None


def read_ut_har_array(path) -> np.ndarray:
  """A UT-HAR X file as amplitude float32 (N, 3, 30, 250)."""
  x = _load_npy(path)
  width = UT_HAR_SUBCARRIERS * UT_HAR_ANTENNAS
  if x.ndim == 4 and x.shape[1] == 1:
    x = x[:, 0]
  if x.ndim != 3 or x.shape[2] != width or not x.shape[1]:
    raise CsiFileError(path, f"holds shape {x.shape}; UT-HAR X arrays are (N, [1,] time, {width}).")
  _require_finite(path, x, "values (index: example, time, column)")
  x = x.astype(np.float32).reshape(len(x), x.shape[1], UT_HAR_ANTENNAS, UT_HAR_SUBCARRIERS)
  return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def ut_har_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(amplitude (N, 3, 30, T), labels (N,)) of UT-HAR split 'train', 'validation' or 'test'."""
  name = UT_HAR_SPLITS[split]
  x_path = os.path.join(root, "data", f"X_{name}.csv")
  y_path = os.path.join(root, "label", f"y_{name}.csv")
  amplitude, labels = read_ut_har_array(x_path), _load_npy(y_path)
  labels = labels.reshape(-1)
  if labels.dtype.kind not in "iuf" or len(labels) != len(amplitude):
    raise CsiFileError(y_path, f"holds {labels.dtype} {labels.shape}; expected {len(amplitude)} "
                               "class ids, one per example of " + x_path)
  if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= len(UT_HAR_CLASSES):
    raise CsiFileError(y_path, f"has labels outside the {len(UT_HAR_CLASSES)} UT-HAR classes "
                               f"0..{len(UT_HAR_CLASSES) - 1}: {sorted(set(labels.tolist()))}.")
  return amplitude, labels.astype(np.int64)


def read_recordings(path) -> list[CsiRecording]:
  """Every recording in a CSI file: one for .mat and .dat, N for a UT-HAR X array."""
  path = os.fspath(path)
  extension = os.path.splitext(path)[1].lower()
  if not os.path.isfile(path):
    raise CsiFileError(path, "does not exist.")
  if extension == ".mat":
    return [read_ntu_fi(path)]
  if extension == ".dat":
    return [intel5300.read_dat(path)]
  if extension in (".csv", ".npy"):
    return [CsiRecording(a, {"format": "ut_har", "index": i})
            for i, a in enumerate(read_ut_har_array(path))]
  raise CsiFileError(path, "has an unknown CSI file type; expected .mat (NTU-Fi), .csv/.npy "
                           "(UT-HAR) or .dat (Intel 5300 / Widar3.0).")


def read_csi(path, index: int | None = None) -> CsiRecording:
  """The CSI recording in `path`: amplitude float32 (antennas, subcarriers, packets) + info.

  Dispatches on the file type: .mat NTU-Fi, .csv/.npy UT-HAR X array, .dat Intel 5300 log.
  A file holding several recordings (UT-HAR) needs `index`.
  """
  recordings = read_recordings(path)
  if index is None and len(recordings) > 1:
    raise CsiFileError(path, f"holds {len(recordings)} recordings; pass index= (0.."
                             f"{len(recordings) - 1}) or use read_recordings.")
  index = index or 0
  if not 0 <= index < len(recordings):
    raise CsiFileError(path, f"holds {len(recordings)} recordings; index {index} is out of range.")
  return recordings[index]
