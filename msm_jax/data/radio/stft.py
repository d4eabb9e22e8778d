"""The one STFT definition (numpy here, TensorFlow in `tf_power_spectrogram`) and the reduction to
the configured (Nt, Nf) grid.

Spectrogram of complex IQ: frames of n_fft samples every hop = n_fft / 2 samples (no padding), a
periodic Hann window, FFT, zero frequency moved to the centre (columns run from -fs/2 to fs/2),
power |X|^2 / sum(window^2) so that unit-power white noise has mean power 1 in every bin: the
noise floor the generators and labels are expressed against. Rows are time frames.

For an output of Nf bins, n_fft = Nf * round(NFFT / Nf) (the reference 1024 rounded to a
multiple of Nf), and groups of n_fft / Nf adjacent bins are averaged; groups of whole frames are
averaged in time and trailing frames that do not fill a group are cropped (`block_average`, which
also reduces spectrogram files: never interpolated). Label maps are never averaged: they are
computed from averaged component powers (see scene.py) or take the label at each block's centre.

The FFTs are scipy's: on batches of complex64 frames it is several times faster than numpy's.
"""
import dataclasses
import functools

import numpy as np
import scipy.fft

NFFT = 1024  # the radio foundation model paper's STFT: Hann 1024, hop 512


@dataclasses.dataclass(frozen=True)
class StftSpec:
  """STFT giving `shape` = (Nt, Nf): FFT size, hop, and frames averaged per output row."""
  n_fft: int
  hop: int
  n_time: int
  n_freq: int

  def samples(self, frames_per_row: int = 1) -> int:
    """IQ samples that give exactly n_time * frames_per_row frames."""
    return self.hop * (self.n_time * frames_per_row - 1) + self.n_fft


def spec_for(n_time: int, n_freq: int) -> StftSpec:
  """The STFT for an (n_time, n_freq) output (see the module doc)."""
  if n_time < 1 or n_freq < 1:
    raise ValueError(f"spectrogram shape ({n_time}, {n_freq}) must be positive.")
  n_fft = n_freq * max(1, round(NFFT / n_freq))
  return StftSpec(n_fft=n_fft, hop=n_fft // 2, n_time=n_time, n_freq=n_freq)


def spec_for_samples(n_samples: int, shape, what: str) -> StftSpec:
  """The STFT for `shape` (Nt, Nf, ...), after checking that `what` (a frame or a window of
  n_samples IQ samples) is long enough to give its Nt rows."""
  spec = spec_for(shape[0], shape[1])
  if n_samples < spec.samples():
    raise ValueError(
        f"{what} has {n_samples} samples, fewer than the {spec.samples()} that {shape[0]} time "
        f"rows of a {spec.n_fft}-point STFT (hop {spec.hop}) need; use fewer time rows or a "
        "longer frame / window.")
  return spec


def window(n_fft: int) -> np.ndarray:
  """Periodic Hann window (as tf.signal.hann_window(periodic=True)), float32."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _analysis_window(n_fft: int) -> np.ndarray:
  """The Hann window scaled to unit energy; for even n_fft times (-1)^n, which shifts the spectrum
  by n_fft / 2: the fftshift for free."""
  w = window(n_fft) / np.sqrt(np.sum(window(n_fft).astype(np.float64) ** 2))
  if n_fft % 2 == 0:
    w = w * (1 - 2 * (np.arange(n_fft) % 2))
  w = w.astype(np.float32)
  w.flags.writeable = False
  return w


def stft(iq: np.ndarray, spec: StftSpec) -> np.ndarray:
  """Complex STFT (frames, n_fft), centred and scaled so white noise of unit power has |X|^2 = 1."""
  iq = np.asarray(iq, np.complex64)
  if iq.shape[-1] < spec.n_fft:
    raise ValueError(f"{iq.shape[-1]} IQ samples are fewer than one {spec.n_fft}-point frame.")
  frames = np.lib.stride_tricks.sliding_window_view(iq, spec.n_fft, axis=-1)[..., ::spec.hop, :]
  x = scipy.fft.fft(frames * _analysis_window(spec.n_fft), axis=-1, overwrite_x=True)
  return x if spec.n_fft % 2 == 0 else np.fft.fftshift(x, axes=-1)


def block_average(values: np.ndarray, n_time: int, n_freq: int) -> np.ndarray:
  """(..., H, W) -> float32 (..., n_time, n_freq): the mean of each block of H // n_time rows by
  W // n_freq columns, after cropping the trailing rows and the edge columns (evenly from both
  sides, keeping the centre) that do not fill a block. Never interpolates; errors if H < n_time
  or W < n_freq."""
  (height, width), lead = values.shape[-2:], values.shape[:-2]
  per_row, per_col = height // n_time, width // n_freq
  if per_row < 1 or per_col < 1:
    raise ValueError(f"{height} x {width} values cannot be averaged down to {n_time} x {n_freq}.")
  first = (width - per_col * n_freq) // 2
  kept = values[..., :per_row * n_time, first:first + per_col * n_freq]
  blocks = kept.reshape(lead + (n_time, per_row, n_freq, per_col))
  # Rows first: adding whole rows is vectorised; short sums along the last axis are not.
  total = blocks.sum(axis=-3, dtype=np.float32).sum(axis=-1)
  return total * np.float32(1 / (per_row * per_col))


def block_centres(height: int, width: int, n_time: int, n_freq: int):
  """(rows, columns) indices of the centre of each `block_average` block: nearest-neighbour
  resizing of label maps onto the same grid."""
  per_row, per_col = height // n_time, width // n_freq
  first = (width - per_col * n_freq) // 2
  return (np.arange(n_time) * per_row + per_row // 2,
          first + np.arange(n_freq) * per_col + per_col // 2)


def reduce_power(power: np.ndarray, spec: StftSpec) -> np.ndarray:
  """(..., frames, n_fft) power -> (..., n_time, n_freq) float32 by averaging (see module doc)."""
  return block_average(power, spec.n_time, spec.n_freq)


def power_spectrogram(iq: np.ndarray, spec: StftSpec) -> np.ndarray:
  """IQ (..., samples) -> reduced float32 power (..., n_time, n_freq)."""
  x = stft(iq, spec)
  # |X|^2 without temporaries: square the interleaved re / im floats in place, then average
  # blocks twice as wide (a bin's two squares are neighbours) and double.
  squares = x.view(np.float32)
  np.square(squares, out=squares)
  return 2 * block_average(squares, spec.n_time, spec.n_freq)


def tf_power_spectrogram(iq, spec: StftSpec):
  """TensorFlow twin of `power_spectrogram` (for tf.data maps): complex64 (..., samples) ->
  float32 (..., n_time, n_freq). Same window, scaling, centring and reduction."""
  from msm_jax.data.tfds_pipeline import import_tf
  tf, _ = import_tf()
  w = window(spec.n_fft)
  w = tf.constant(w / np.sqrt(np.sum(w.astype(np.float64) ** 2)), tf.float32)
  frames = tf.signal.frame(iq, spec.n_fft, spec.hop, axis=-1)
  x = tf.signal.fft(frames * tf.complex(w, tf.zeros_like(w)))
  x = tf.roll(x, shift=spec.n_fft // 2, axis=-1)  # == np.fft.fftshift, odd n_fft included
  power = tf.math.real(x) ** 2 + tf.math.imag(x) ** 2
  per_row = tf.shape(power)[-2] // spec.n_time
  tf.debugging.assert_positive(per_row, "fewer STFT frames than spectrogram time rows")
  kept = power[..., :per_row * spec.n_time, :]
  lead = tf.shape(kept)[:-2]
  blocks = tf.reshape(kept, tf.concat(
      [lead, [spec.n_time, per_row, spec.n_freq, spec.n_fft // spec.n_freq]], 0))
  return tf.reduce_mean(blocks, axis=[-3, -1])
