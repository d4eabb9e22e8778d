"""Recordings users bring: SigMF and .npy IQ files, cut into spectrogram windows.

  recording = read_recording('capture.sigmf-meta')            # or .sigmf-data, or x.npy
  power = recording_spectrograms(recording, (64, 64, 1))      # (windows, 64, 64, 1) float32

SigMF: NAME.sigmf-meta (JSON: global core:datatype, core:sample_rate; captures[0] core:frequency;
annotations kept as they are) next to NAME.sigmf-data (raw interleaved samples). Complex datatypes
cf64/cf32/ci32/ci16/ci8/cu16/cu8 with _le/_be (8-bit types have none); integers are scaled to
[-1, 1). .npy: a complex 1-D array or a real (2, N) / (N, 2) array of I and Q, the sample rate from
the `sample_rate` argument or a sidecar NAME.json {"sample_rate": ...} (optionally
"center_frequency"). Every problem raises RecordingError naming the file.
"""
import dataclasses
import json
import os

import numpy as np

from msm_jax.data.radio.scene import DEFAULT
from msm_jax.data.radio.stft import power_spectrogram, spec_for

_SIGMF_TYPES = {"f64": np.float64, "f32": np.float32, "i32": np.int32, "i16": np.int16,
                "i8": np.int8, "u16": np.uint16, "u8": np.uint8}


class RecordingError(ValueError):
  """A recording that cannot be read: missing, truncated, or described inconsistently."""


@dataclasses.dataclass
class Recording:
  iq: np.ndarray  # complex64, 1-D
  sample_rate: float
  center_frequency: float | None
  annotations: list
  path: str


def _sigmf_dtype(datatype: str, path: str) -> np.dtype:
  """'cf32_le' -> little-endian float32 pairs; errors for real or unknown datatypes."""
  body, _, order = datatype.partition("_")
  if not body.startswith("c") or body[1:] not in _SIGMF_TYPES or order not in ("", "le", "be") or (
      bool(order) == (body[1:] in ("i8", "u8"))):
    raise RecordingError(f"{path}: core:datatype {datatype!r} is not a supported complex SigMF "
                         f"datatype (c{{{','.join(_SIGMF_TYPES)}}}_le/_be, ci8, cu8).")
  return np.dtype(_SIGMF_TYPES[body[1:]]).newbyteorder("<" if order != "be" else ">")


def _to_complex(pairs: np.ndarray) -> np.ndarray:
  """Interleaved I, Q (any numeric dtype) -> complex64, integers scaled to [-1, 1)."""
  values = pairs.astype(np.float32)
  if pairs.dtype.kind == "u":
    half = np.float32(2.0 ** (8 * pairs.dtype.itemsize - 1))
    values = (values - half) / half
  elif pairs.dtype.kind == "i":
    values /= np.float32(2.0 ** (8 * pairs.dtype.itemsize - 1))
  return (values[0::2] + 1j * values[1::2]).astype(np.complex64)


def _read_sigmf(path: str) -> Recording:
  base = path[:-len(".sigmf-meta")] if path.endswith(".sigmf-meta") else path[:-len(".sigmf-data")]
  meta_path, data_path = base + ".sigmf-meta", base + ".sigmf-data"
  for needed in (meta_path, data_path):
    if not os.path.exists(needed):
      raise RecordingError(f"{needed}: missing (a SigMF recording needs both .sigmf-meta and "
                           ".sigmf-data).")
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    header = meta["global"]
    datatype, sample_rate = header["core:datatype"], float(header["core:sample_rate"])
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
    raise RecordingError(f"{meta_path}: not SigMF metadata with global core:datatype and "
                         f"core:sample_rate ({type(error).__name__}: {error}).") from None
  dtype = _sigmf_dtype(datatype, meta_path)
  size = os.path.getsize(data_path)
  if size == 0 or size % (2 * dtype.itemsize):
    raise RecordingError(f"{data_path}: {size} bytes is not a whole number of {datatype} samples "
                         f"({2 * dtype.itemsize} bytes each): truncated or mislabelled.")
  captures = meta.get("captures") or [{}]
  return Recording(iq=_to_complex(np.fromfile(data_path, dtype)), sample_rate=sample_rate,
                   center_frequency=captures[0].get("core:frequency"),
                   annotations=list(meta.get("annotations", [])), path=meta_path)


def _read_npy(path: str, sample_rate: float | None) -> Recording:
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    raise RecordingError(f"{path}: not a readable .npy array ({error}).") from None
  sidecar = os.path.splitext(path)[0] + ".json"
  extra = {}
  if os.path.exists(sidecar):
    try:
      with open(sidecar) as f:
        extra = json.load(f)
    except json.JSONDecodeError as error:
      raise RecordingError(f"{sidecar}: invalid JSON ({error}).") from None
  sample_rate = sample_rate or extra.get("sample_rate")
  if not sample_rate:
    raise RecordingError(f"{path}: no sample rate; pass one or write {sidecar} with "
                         '{"sample_rate": ...}.')
  if np.iscomplexobj(array) and array.ndim == 1:
    iq = array.astype(np.complex64)
  elif array.dtype.kind in "fiu" and array.ndim == 2 and 2 in array.shape:
    pairs = array if array.shape[0] == 2 else array.T
    iq = (pairs[0] + 1j * pairs[1]).astype(np.complex64)
  else:
    raise RecordingError(f"{path}: holds {array.dtype} {array.shape}; expected complex IQ (N,) or "
                         "real I/Q (2, N) or (N, 2).")
  return Recording(iq=iq, sample_rate=float(sample_rate),
                   center_frequency=extra.get("center_frequency"), annotations=[], path=path)


def read_recording(path: str, sample_rate: float | None = None) -> Recording:
  """Reads a SigMF (.sigmf-meta or .sigmf-data) or .npy recording (see the module doc).

  `sample_rate` is needed for .npy files without a sidecar; for SigMF the metadata's wins.
  """
  path = os.fspath(path)
  if path.endswith((".sigmf-meta", ".sigmf-data")):
    return _read_sigmf(path)
  if path.endswith(".npy"):
    if not os.path.exists(path):
      raise RecordingError(f"{path}: missing.")
    return _read_npy(path, sample_rate)
  raise RecordingError(f"{path}: not a recording (.sigmf-meta, .sigmf-data or .npy).")


def window_samples(recording: Recording, shape, window_seconds: float | None = None) -> int:
  """Samples per window; errors if the window cannot give `shape`'s time frames."""
  seconds = window_seconds or DEFAULT.frame_seconds
  n = int(round(seconds * recording.sample_rate))
  spec = spec_for(shape[0], shape[1])
  if n < spec.samples():
    raise RecordingError(
        f"{recording.path}: a {seconds * 1e3:g} ms window at {recording.sample_rate / 1e6:g} Msps "
        f"has {n} samples, fewer than the {spec.samples()} that {shape[0]} frames of a "
        f"{spec.n_fft}-point STFT need; use longer windows or fewer time rows.")
  if len(recording.iq) < n:
    raise RecordingError(f"{recording.path}: {len(recording.iq)} samples, shorter than one "
                         f"{seconds * 1e3:g} ms window ({n} samples).")
  return n


def recording_windows(recording: Recording, shape, window_seconds: float | None = None):
  """The recording cut into whole windows: complex64 (W, window samples); the tail is dropped."""
  n = window_samples(recording, shape, window_seconds)
  count = len(recording.iq) // n
  return recording.iq[:count * n].reshape(count, n)


def recording_spectrograms(recording: Recording, shape, window_seconds: float | None = None):
  """float32 power (W, Nt, Nf, C) of consecutive windows of `window_seconds` (default: the
  generators' 16 ms frame), with the generators' STFT and reduction. A recording is one antenna,
  so C must be 1.
  """
  if len(shape) != 3 or shape[2] != 1:
    raise RecordingError(f"{recording.path}: a single-stream recording gives 1 channel, not the "
                         f"{tuple(shape)} requested.")
  windows = recording_windows(recording, shape, window_seconds)
  spec = spec_for(shape[0], shape[1])
  # One window at a time: a window's STFT holds twice its samples (50 % overlap) in memory.
  return np.stack([power_spectrogram(window, spec) for window in windows])[..., None]
