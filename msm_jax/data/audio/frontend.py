"""The log-mel front end, defined once: what the dataset builder, the generator and launch.predict
all run.

  frontend = AudioFrontend(frames=1024, n_mels=128)   # MaskSpec's input: 10.24 s clips
  power = spectrogram(samples, frontend)              # (C, N) samples -> (1024, 128, C) mel power

A short-time Fourier transform with frames centred every hop (the signal zero-padded by n_fft / 2
on both sides, so frame t is centred on sample t * hop), a periodic Hann window of window_seconds
zero-padded to n_fft (the next power of two), power |X|^2, then triangular filters on the Slaney
mel scale with Slaney area normalisation. That is librosa.feature.melspectrogram with its defaults
(center=True, pad_mode='constant', htk=False, norm='slaney'); tests/test_audio_frontend.py checks
the agreement.

The log is the one every dataset here uses, normalize.log_power_db: 10*log10(power + 1e-10), a
floor at -100 dB (librosa's power_to_db amin) below the quantisation noise of 16-bit audio, so it
only shapes digital silence and padding. Like every dataset, the builder stores linear (mel) power
and the input pipelines take the log and standardise (msm_jax/data/normalize.py).
"""
import dataclasses
import functools
import math

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse


@dataclasses.dataclass(frozen=True)
class AudioFrontend:
  """How audio becomes a model input of shape (frames, n_mels, channels); JSON-ready through
  dataclasses.asdict, stored in a dataset's metadata and a finetuned model's checkpoint."""
  frames: int  # time frames per input (Nt)
  n_mels: int = 128  # mel bins (Nf)
  channels: int = 1  # 1: files are mixed to mono; C > 1: files of C channels keep them
  sample_rate: int = 16_000  # Hz; files are resampled to it
  clip_seconds: float | None = None  # audio per input; default frames * hop_seconds
  window_seconds: float = 0.025
  hop_seconds: float = 0.010
  fmin: float = 0.0
  fmax: float | None = None  # default sample_rate / 2

  def __post_init__(self):
    # Defaults resolved here, so that stored settings say every value they were built with.
    if self.sample_rate == int(self.sample_rate):  # 16000.0 from a float flag -> 16000
      object.__setattr__(self, "sample_rate", int(self.sample_rate))
    if self.clip_seconds is None:
      object.__setattr__(self, "clip_seconds", round(self.frames * self.hop_seconds, 9))
    if self.fmax is None:
      object.__setattr__(self, "fmax", self.sample_rate / 2)
    if min(self.frames, self.n_mels, self.channels) < 1 or not isinstance(
        self.sample_rate, int) or not (self.sample_rate > 0 and self.clip_samples >= 1 and
                                       self.hop_length >= 1 and self.win_length >= 2):
      raise ValueError(f"audio front end {self}: frames, n_mels, channels and the sample rate "
                       "(whole Hz) must be positive, and the clip, window and hop must hold "
                       "samples.")
    if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
      raise ValueError(f"audio front end: need 0 <= fmin < fmax <= sample_rate / 2; got fmin="
                       f"{self.fmin}, fmax={self.fmax} at {self.sample_rate} Hz.")
    mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, float(self.fmin),
                   float(self.fmax))  # raises now, not at the first file, if a filter is empty

  @classmethod
  def for_shape(cls, shape, **settings) -> "AudioFrontend":
    """The front end of inputs of `shape` (frames, n_mels, channels); other fields as given."""
    if len(shape) != 3:
      raise ValueError(f"audio inputs are (frames, mel bins, channels), not {tuple(shape)}.")
    return cls(*(int(d) for d in shape), **settings)

  @property
  def shape(self) -> tuple[int, int, int]:
    return self.frames, self.n_mels, self.channels

  @property
  def win_length(self) -> int:
    return round(self.window_seconds * self.sample_rate)

  @property
  def hop_length(self) -> int:
    return round(self.hop_seconds * self.sample_rate)

  @property
  def n_fft(self) -> int:
    return 1 << (self.win_length - 1).bit_length()

  @property
  def clip_samples(self) -> int:
    return round(self.clip_seconds * self.sample_rate)


def _hz_to_mel(hz):
  """Slaney's mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
  hz = np.asarray(hz, np.float64)
  log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (math.log(6.4) / 27.0)
  return np.where(hz >= 1000.0, log_part, hz * 3.0 / 200.0)


def _mel_to_hz(mel):
  mel = np.asarray(mel, np.float64)
  return np.where(mel >= 15.0, 1000.0 * np.exp(math.log(6.4) / 27.0 * (mel - 15.0)),
                  mel * 200.0 / 3.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                   fmax: float) -> np.ndarray:
  """float32 (n_mels, n_fft // 2 + 1): triangles between n_mels + 2 mel-spaced edge frequencies,
  each scaled by 2 / its bandwidth in Hz (Slaney), as librosa.filters.mel's defaults."""
  edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
  bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
  rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
  falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
  weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
  if not weights.max(axis=1).all():
    raise ValueError(f"{n_mels} mel bins between {fmin:g} and {fmax:g} Hz leave some filters "
                     f"without any of the {n_fft // 2 + 1} FFT bins ({n_fft}-point FFT at "
                     f"{sample_rate} Hz); use fewer mel bins (--width) or a higher sample rate.")
  return weights.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _sparse_filterbank(*settings) -> scipy.sparse.csr_array:
  """mel_filterbank(*settings) as a sparse matrix: each FFT bin feeds at most two filters, and a
  sparse product is single-threaded, where BLAS threads for such small products only contend with
  the training step for the cores (several times slower on a busy CPU)."""
  return scipy.sparse.csr_array(mel_filterbank(*settings))


@functools.lru_cache(maxsize=16)
def _window(win_length: int, n_fft: int) -> np.ndarray:
  """Periodic Hann of win_length, zero-padded to n_fft with the window centred (librosa's
  pad_center)."""
  window = np.zeros(n_fft, np.float32)
  start = (n_fft - win_length) // 2
  window[start:start + win_length] = scipy.signal.get_window("hann", win_length, fftbins=True)
  return window


def mel_power(samples: np.ndarray, frontend: AudioFrontend) -> np.ndarray:
  """float32 mel power (..., 1 + N // hop, n_mels) of float samples (..., N) (module doc)."""
  samples = np.asarray(samples, np.float32)
  n_fft, hop = frontend.n_fft, frontend.hop_length
  padded = np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(n_fft // 2, n_fft // 2)])
  frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
  spectrum = scipy.fft.rfft(frames * _window(frontend.win_length, n_fft), axis=-1)
  power = np.square(spectrum.real) + np.square(spectrum.imag)
  filters = _sparse_filterbank(frontend.sample_rate, n_fft, frontend.n_mels,
                               float(frontend.fmin), float(frontend.fmax))
  mel = filters @ power.reshape(-1, power.shape[-1]).T  # (n_mels, frames of every channel)
  return mel.T.reshape(power.shape[:-1] + (frontend.n_mels,))


def spectrogram(samples: np.ndarray, frontend: AudioFrontend) -> np.ndarray:
  """Model input float32 (frames, n_mels, C) of one clip's samples (C, N): the mel power, its
  frames cut to `frontend.frames` or padded with silence (zero power)."""
  power = np.moveaxis(mel_power(samples, frontend), 0, -1)  # (T, n_mels, C)
  power = power[:frontend.frames]
  missing = frontend.frames - len(power)
  return np.pad(power, [(0, missing), (0, 0), (0, 0)]) if missing else power
