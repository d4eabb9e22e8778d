"""MathWorks-style LTE/NR segmentation frames: a spectrogram file and a label map per frame.

A folder holds, per frame, NAME.mat (the spectrogram matrix in variable `rxSpectrogram`, or the
file's only array; MATLAB v4-v7, not v7.3 / HDF5) or NAME.png (a grey-level dB image), and
NAME_label.png (or NAME_label.mat) with 0 = noise, 127 = NR, 255 = LTE. Both are rows = time,
columns = frequency. Spectrogram values become linear power: complex -> |x|^2; real with negative
values -> dB -> 10^(x/10); non-negative -> already power; PNG grey levels (8 or 16 bit) span
PNG_DB_RANGE dB. Colour PNGs are refused unless grey (R = G = B): the colours of a colormapped image
do not measure power. Reduction to the requested grid is the generators' (stft.block_average):
crop to whole blocks, average each block, never interpolate - so a frame smaller than the grid is
an error; label maps take the label at each block's centre (nearest neighbour, never averaged).
Every unreadable file raises RecordingError naming it, as does a spectrogram holding NaN or inf.
"""
import glob
import os

import numpy as np

from msm_jax.data.normalize import nonfinite
from msm_jax.data.radio.recordings import RecordingError
from msm_jax.data.radio.stft import block_average, block_centres

LABEL_VALUES = {0: "noise", 127: "nr", 255: "lte"}
PNG_DB_RANGE = 60.0
MAT_VARIABLE = "rxSpectrogram"


def _read_png(path: str) -> np.ndarray:
  """A grey-level PNG as a 2-D integer array."""
  from PIL import Image  # installed with matplotlib
  try:
    with Image.open(path) as image:
      if image.mode in ("P", "1"):  # palette or bilevel: their colours, not their indices
        image = image.convert("RGBA" if image.mode == "P" else "L")
      array = np.asarray(image)
  except (OSError, SyntaxError, ValueError) as error:  # PIL reports broken PNG chunks as syntax
    raise RecordingError(f"{path}: not a readable PNG ({type(error).__name__}: {error}).") from None
  if array.ndim == 3:
    colours = array[..., :1] if array.shape[-1] <= 2 else array[..., :3]  # alpha aside
    if (colours != colours[..., :1]).any():
      raise RecordingError(f"{path}: a colour image; the colours of a colormapped spectrogram do "
                           "not measure power. Save grey levels (dB scaled to 0-255) or a .mat.")
    array = colours[..., 0]
  return array


def _read_mat(path: str, variable: str) -> np.ndarray:
  from scipy import io  # only .mat files need scipy
  try:
    contents = {k: v for k, v in io.loadmat(path).items() if not k.startswith("__")}
  except NotImplementedError:  # scipy's answer to MATLAB v7.3, which is HDF5
    raise RecordingError(f"{path}: a MATLAB v7.3 (HDF5) .mat file, which is not supported; save "
                         "it with save(..., '-v7').") from None
  except (ValueError, OSError, TypeError, EOFError, io.matlab.MatReadError) as error:
    raise RecordingError(f"{path}: not a readable .mat file ({type(error).__name__}: "
                         f"{error}).") from None
  if variable in contents:
    return contents[variable]
  if len(contents) != 1:
    raise RecordingError(f"{path}: expected variable {variable!r} or a single array; found "
                         f"{sorted(contents)}.")
  return next(iter(contents.values()))


def _read_array(path: str, variable: str) -> np.ndarray:
  return _read_png(path) if path.endswith(".png") else _read_mat(path, variable)


def read_frame(spectrogram_path: str, label_path: str, shape, classes) -> tuple:
  """(float32 power (Nt, Nf, 1), uint8 ids into `classes` (Nt, Nf)) of one frame."""
  if not os.path.exists(label_path):
    raise RecordingError(f"{spectrogram_path}: its label map {label_path} is missing.")
  values = _read_array(spectrogram_path, MAT_VARIABLE)
  problem = nonfinite(values)
  if problem:
    raise RecordingError(f"{spectrogram_path}: {problem}.")
  if np.iscomplexobj(values):
    power = np.abs(values) ** 2
  elif spectrogram_path.endswith(".png"):
    full = 255 if values.dtype == np.uint8 else 65535
    power = 10 ** (values / full * PNG_DB_RANGE / 10)
  else:
    power = 10 ** (values / 10) if values.min() < 0 else values
  labels = np.asarray(_read_array(label_path, "label"))
  if power.ndim != 2 or labels.ndim != 2 or power.shape != labels.shape:
    raise RecordingError(f"{spectrogram_path}: spectrogram {power.shape} and label map "
                         f"{labels.shape} ({label_path}) must be matching 2-D arrays.")
  (height, width), (n_time, n_freq) = power.shape, shape[:2]
  if height < n_time or width < n_freq:
    raise RecordingError(f"{spectrogram_path}: a {height} x {width} frame is smaller than the "
                         f"{n_time} x {n_freq} requested; frames are only ever reduced, not "
                         f"interpolated: ask for at most {height} x {width}.")
  unknown = sorted(set(np.unique(labels).tolist()) - set(LABEL_VALUES))
  if unknown:
    raise RecordingError(f"{label_path}: label values {unknown[:5]} are not among "
                         f"{sorted(LABEL_VALUES)} (noise, NR, LTE).")
  lookup = np.zeros(256, np.uint8)
  for value, name in LABEL_VALUES.items():
    lookup[value] = classes.index(name)
  rows, columns = block_centres(height, width, n_time, n_freq)
  ids = lookup[labels[np.ix_(rows, columns)].astype(np.uint8)]
  return block_average(power.astype(np.float32), n_time, n_freq)[..., None], ids


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
