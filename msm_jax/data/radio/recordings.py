"""Recordings users bring: SigMF and .npy IQ files, cut into spectrogram windows.

  recording = read_recording('capture.sigmf-meta')            # or .sigmf-data, or x.npy
  power = recording_spectrograms(recording, (64, 64, 1))      # (windows, 64, 64, 1) float32

SigMF: NAME.sigmf-meta (JSON: global core:datatype, core:sample_rate; captures with
core:sample_start and core:frequency; annotations kept as they are) next to NAME.sigmf-data (raw
interleaved samples). Complex datatypes cf64/cf32/ci32/ci16/ci8/cu16/cu8 with _le/_be (8-bit types
have none); integers are scaled to [-1, 1). .npy: a complex 1-D array or a real (2, N) / (N, 2)
array of I and Q, the sample rate from the `sample_rate` argument or a sidecar NAME.json
{"sample_rate": ...} (optionally "center_frequency"). Every problem raises RecordingError naming
the file, NaN or infinite samples included (found as they are read; `check_finite` reads all).

Files are memory-mapped, not read: `recording.iq` slices like a complex64 array, and only the
samples of a slice are read and converted, so recordings larger than memory work window by window.
"""
import dataclasses
import json
import os
from typing import Callable

import numpy as np

from msm_jax.data.normalize import nonfinite
from msm_jax.data.radio.scene import DEFAULT
from msm_jax.data.radio.stft import power_spectrogram, spec_for, spec_for_samples

_SIGMF_TYPES = {"f64": np.float64, "f32": np.float32, "i32": np.int32, "i16": np.int16,
                "i8": np.int8, "u16": np.uint16, "u8": np.uint8}


class RecordingError(ValueError):
  """A recording that cannot be read: missing, truncated, or described inconsistently."""


class MappedIQ:
  """IQ samples in a memory-mapped file: len() and contiguous slices (complex64) like a 1-D array,
  reading and converting only the samples sliced; np.asarray reads them all. A slice holding a NaN
  or infinite sample raises RecordingError naming `path`."""

  def __init__(self, length: int, read: Callable[[int, int], np.ndarray], path: str):
    self._length, self._read, self._path = length, read, path

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, key: slice) -> np.ndarray:
    if not isinstance(key, slice) or key.step not in (None, 1):
      raise TypeError(f"MappedIQ takes contiguous slices, not {key!r}.")
    start, stop, _ = key.indices(self._length)
    samples = self._read(start, max(start, stop))
    problem = nonfinite(samples, f"samples {start}..{max(start, stop) - 1}", offset=start)
    if problem:
      raise RecordingError(f"{self._path}: {problem}.")
    return samples

  def __array__(self, dtype=None, copy=None):
    return np.asarray(self[:], dtype)


@dataclasses.dataclass
class Recording:
  iq: np.ndarray | MappedIQ  # complex64 samples, 1-D
  sample_rate: float
  center_frequency: float | None  # of the first capture
  annotations: list
  path: str
  captures: list = dataclasses.field(default_factory=list)  # SigMF captures, as in the file

  def center_frequency_at(self, sample: int) -> float | None:
    """The centre frequency of the capture segment holding `sample` (SigMF captures start at
    core:sample_start), else the recording's."""
    started = [c for c in self.captures if c.get("core:sample_start", 0) <= sample]
    frequency = max(started, key=lambda c: c.get("core:sample_start", 0), default={}).get(
        "core:frequency")
    return self.center_frequency if frequency is None else frequency

  def annotations_in(self, start: int, count: int) -> list:
    """The annotations overlapping samples [start, start + count) (sample indices of the file; an
    annotation without core:sample_count runs to the end)."""
    def overlaps(annotation):
      first = annotation.get("core:sample_start", 0)
      length = annotation.get("core:sample_count")
      return first < start + count and (length is None or first + length > start)
    return [a for a in self.annotations if overlaps(a)]


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
  values = pairs.astype(np.float32)  # a native-order copy: also the complex64 result's memory
  if pairs.dtype.kind == "u":
    half = np.float32(2.0 ** (8 * pairs.dtype.itemsize - 1))
    values = (values - half) / half
  elif pairs.dtype.kind == "i":
    values /= np.float32(2.0 ** (8 * pairs.dtype.itemsize - 1))
  return values.view(np.complex64)


def _from_parts(i: np.ndarray, q: np.ndarray) -> np.ndarray:
  """Separate I and Q arrays -> complex64."""
  iq = np.empty(len(i), np.complex64)
  iq.real, iq.imag = i, q
  return iq


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
  captures = list(meta.get("captures") or [])
  pairs = np.memmap(data_path, dtype, mode="r")
  iq = MappedIQ(len(pairs) // 2, lambda a, b: _to_complex(pairs[2 * a:2 * b]), data_path)
  return Recording(iq=iq,
                   sample_rate=sample_rate,
                   center_frequency=(captures or [{}])[0].get("core:frequency"),
                   annotations=list(meta.get("annotations", [])), path=meta_path,
                   captures=captures)


def _read_npy(path: str, sample_rate: float | None) -> Recording:
  try:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
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
    iq = MappedIQ(len(array), lambda a, b: array[a:b].astype(np.complex64), path)
  elif array.dtype.kind in "fiu" and array.ndim == 2 and 2 in array.shape:
    pairs = array if array.shape[0] == 2 else array.T  # a transposed view: still mapped
    iq = MappedIQ(pairs.shape[1], lambda a, b: _from_parts(pairs[0, a:b], pairs[1, a:b]),
                  path)
  else:
    raise RecordingError(f"{path}: holds {array.dtype} {array.shape}; expected complex IQ (N,) or "
                         "real I/Q (2, N) or (N, 2).")
  return Recording(iq=iq, sample_rate=float(sample_rate),
                   center_frequency=extra.get("center_frequency"), annotations=[], path=path)


def read_recording(path: str, sample_rate: float | None = None) -> Recording:
  """Opens a SigMF (.sigmf-meta or .sigmf-data) or .npy recording, memory-mapped (module doc).

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


def check_finite(recording: Recording, n: int) -> None:
  """Reads every whole window of n samples, as a dataset or prediction would, so that a NaN or
  infinite sample raises RecordingError now, with the same message."""
  for start in range(0, len(recording.iq) - n + 1, n):
    recording.iq[start:start + n]


def window_samples(recording: Recording, shape, window_seconds: float | None = None) -> int:
  """Samples per window; errors if the window cannot give `shape`'s time rows or the recording
  is shorter than one window."""
  seconds = window_seconds or DEFAULT.frame_seconds
  n = int(round(seconds * recording.sample_rate))
  try:
    spec_for_samples(n, shape, f"a {seconds * 1e3:g} ms window at "
                     f"{recording.sample_rate / 1e6:g} Msps")
  except ValueError as error:
    raise RecordingError(f"{recording.path}: {error}") from None
  if len(recording.iq) < n:
    raise RecordingError(f"{recording.path}: {len(recording.iq)} samples, shorter than one "
                         f"{seconds * 1e3:g} ms window ({n} samples).")
  return n


def recording_windows(recording: Recording, shape, window_seconds: float | None = None):
  """Yields (first sample, complex64 window) for each whole window, read one at a time; the tail
  that does not fill a window is dropped."""
  n = window_samples(recording, shape, window_seconds)
  for start in range(0, len(recording.iq) - n + 1, n):
    yield start, recording.iq[start:start + n]


def recording_spectrograms(recording: Recording, shape, window_seconds: float | None = None):
  """float32 power (W, Nt, Nf, C) of consecutive windows of `window_seconds` (default: the
  generators' 16 ms frame), with the generators' STFT and reduction. A recording is one antenna,
  so C must be 1.
  """
  if len(shape) != 3 or shape[2] != 1:
    raise RecordingError(f"{recording.path}: a single-stream recording gives 1 channel, not the "
                         f"{tuple(shape)} requested.")
  spec = spec_for(shape[0], shape[1])  # the windows' length is checked as they are cut
  # One window at a time: a window's STFT holds twice its samples (50 % overlap) in memory.
  return np.stack([power_spectrogram(window, spec)
                   for _, window in recording_windows(recording, shape, window_seconds)])[..., None]
