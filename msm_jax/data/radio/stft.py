"""The one STFT definition (numpy here, TensorFlow in `tf_power_spectrogram`) and the reduction to
the configured (Nt, Nf) grid.

Spectrogram of complex IQ: frames of n_fft samples every hop = n_fft / 2 samples (no padding), a
periodic Hann window, FFT, zero frequency moved to the centre (columns run from -fs/2 to fs/2),
power |X|^2 / sum(window^2) so that unit-power white noise has mean power 1 in every bin: the
noise floor the generators and labels are expressed against. Rows are time frames.

For an output of Nf bins, n_fft = Nf * round(NFFT / Nf) (the reference 1024 rounded to a
multiple of Nf), and groups of n_fft / Nf adjacent bins are averaged; groups of whole frames are
averaged in time and trailing frames that do not fill a group are cropped. Label maps are never
averaged: they are computed from averaged component powers (see scene.py) or resized with
nearest neighbours.
"""
import dataclasses

import numpy as np

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


def window(n_fft: int) -> np.ndarray:
  """Periodic Hann window (as tf.signal.hann_window(periodic=True)), float32."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft(iq: np.ndarray, spec: StftSpec) -> np.ndarray:
  """Complex STFT (frames, n_fft), centred and scaled so white noise of unit power has |X|^2 = 1."""
  iq = np.asarray(iq, np.complex64)
  if iq.shape[-1] < spec.n_fft:
    raise ValueError(f"{iq.shape[-1]} IQ samples are fewer than one {spec.n_fft}-point frame.")
  frames = np.lib.stride_tricks.sliding_window_view(iq, spec.n_fft, axis=-1)[..., ::spec.hop, :]
  w = window(spec.n_fft) / np.sqrt(np.sum(window(spec.n_fft).astype(np.float64) ** 2))
  if spec.n_fft % 2 == 0:
    # Centring for free: (-1)^n in the window shifts the spectrum by n_fft / 2 (== fftshift).
    w = w * (1 - 2 * (np.arange(spec.n_fft) % 2))
    return np.fft.fft(frames * w.astype(np.float32), axis=-1).astype(np.complex64, copy=False)
  x = np.fft.fft(frames * w.astype(np.float32), axis=-1)
  return np.fft.fftshift(x, axes=-1).astype(np.complex64, copy=False)


def reduce_power(power: np.ndarray, spec: StftSpec) -> np.ndarray:
  """(..., frames, n_fft) power -> (..., n_time, n_freq) float32 by averaging (see module doc)."""
  frames = power.shape[-2]
  per_row = frames // spec.n_time
  if per_row < 1:
    raise ValueError(f"{frames} STFT frames cannot give {spec.n_time} time rows.")
  per_bin = spec.n_fft // spec.n_freq
  kept = power[..., :per_row * spec.n_time, :]
  blocks = kept.reshape(kept.shape[:-2] + (spec.n_time, per_row, spec.n_freq, per_bin))
  return blocks.mean(axis=(-3, -1), dtype=np.float32)


def power_spectrogram(iq: np.ndarray, spec: StftSpec) -> np.ndarray:
  """IQ (..., samples) -> reduced float32 power (..., n_time, n_freq)."""
  x = stft(iq, spec)
  return reduce_power(x.real ** 2 + x.imag ** 2, spec)


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
