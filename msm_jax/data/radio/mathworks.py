"""MathWorks-style LTE/NR segmentation frames: a spectrogram file and a label map per frame.

A folder holds, per frame, NAME.mat (the spectrogram matrix in variable `rxSpectrogram`, or the
file's only array) or NAME.png (a grey-level dB image), and NAME_label.png (or NAME_label.mat)
with 0 = noise, 127 = NR, 255 = LTE. Both are rows = time, columns = frequency. Spectrogram
values become linear power: complex -> |x|^2; real with negative values -> dB -> 10^(x/10);
non-negative -> already power; PNG grey levels span PNG_DB_RANGE dB. Resizing to the requested
grid averages whole blocks of pixels when the sizes divide, else takes nearest neighbours; label
maps always take nearest neighbours (never interpolated).
"""
import glob
import os

import numpy as np

from msm_jax.data.radio.recordings import RecordingError

LABEL_VALUES = {0: "noise", 127: "nr", 255: "lte"}
PNG_DB_RANGE = 60.0
MAT_VARIABLE = "rxSpectrogram"


def _read_array(path: str, variable: str | None) -> np.ndarray:
  if path.endswith(".png"):
    from PIL import Image  # installed with matplotlib
    with Image.open(path) as image:
      array = np.asarray(image)
    return array.mean(axis=-1) if array.ndim == 3 else array  # colour: average the channels
  from scipy import io  # only .mat files need scipy
  try:
    contents = {k: v for k, v in io.loadmat(path).items() if not k.startswith("__")}
  except (ValueError, OSError, TypeError) as error:
    raise RecordingError(f"{path}: not a readable .mat file ({error}).") from None
  if variable in contents:
    return contents[variable]
  if len(contents) != 1:
    raise RecordingError(f"{path}: expected variable {variable!r} or a single array; found "
                         f"{sorted(contents)}.")
  return next(iter(contents.values()))


def _resize(array: np.ndarray, shape, average: bool) -> np.ndarray:
  """Block-average when `average` and sizes divide, else nearest-neighbour indexing."""
  (h, w), (n_time, n_freq) = array.shape, shape
  if average and h % n_time == 0 and w % n_freq == 0:
    return array.reshape(n_time, h // n_time, n_freq, w // n_freq).mean(axis=(1, 3))
  rows = (np.arange(n_time) * h) // n_time + (h // n_time) // 2
  cols = (np.arange(n_freq) * w) // n_freq + (w // n_freq) // 2
  return array[np.ix_(rows, cols)]


def read_frame(spectrogram_path: str, label_path: str, shape, classes) -> tuple:
  """(float32 power (Nt, Nf, 1), uint8 ids into `classes` (Nt, Nf)) of one frame."""
  if not os.path.exists(label_path):
    raise RecordingError(f"{spectrogram_path}: its label map {label_path} is missing.")
  values = _read_array(spectrogram_path, MAT_VARIABLE)
  if np.iscomplexobj(values):
    power = np.abs(values) ** 2
  elif spectrogram_path.endswith(".png"):
    power = 10 ** (values / 255 * PNG_DB_RANGE / 10)
  else:
    power = 10 ** (values / 10) if values.min() < 0 else values
  labels = np.asarray(_read_array(label_path, "label"))
  if power.ndim != 2 or labels.ndim != 2 or power.shape != labels.shape:
    raise RecordingError(f"{spectrogram_path}: spectrogram {power.shape} and label map "
                         f"{labels.shape} ({label_path}) must be matching 2-D arrays.")
  unknown = sorted(set(np.unique(labels).tolist()) - set(LABEL_VALUES))
  if unknown:
    raise RecordingError(f"{label_path}: label values {unknown[:5]} are not among "
                         f"{sorted(LABEL_VALUES)} (noise, NR, LTE).")
  lookup = np.zeros(256, np.uint8)
  for value, name in LABEL_VALUES.items():
    lookup[value] = classes.index(name)
  ids = lookup[_resize(labels.astype(np.uint8), shape[:2], average=False)]
  power = _resize(power.astype(np.float32), shape[:2], average=True)
  return power[..., None].astype(np.float32), ids


def find_frames(folder: str) -> list[tuple[str, str]]:
  """Sorted (spectrogram, label map) path pairs under `folder` (recursively)."""
  pairs = []
  for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
    stem, ext = os.path.splitext(path)
    if ext in (".mat", ".png") and not stem.endswith("_label"):
      labels = [stem + "_label" + e for e in (".png", ".mat")]
      pairs.append((path, next((p for p in labels if os.path.exists(p)), labels[0])))
  if not pairs:
    raise RecordingError(f"{folder}: no spectrogram frames (NAME.mat / NAME.png with "
                         "NAME_label.png).")
  return pairs
