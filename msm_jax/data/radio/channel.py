"""Propagation and front end: tapped-delay-line fading with Doppler, carrier offset, time offset.

Taps get exponentially decaying powers at exponentially distributed delays (the delay spread sets
both); each tap's complex gain is a sum of sinusoids with Doppler shifts fd * cos(angle) (Jakes'
model), evaluated once per BLOCK samples - at 500 Hz Doppler a block of 256 samples at 61.44 Msps
turns the phase by 0.01 rad, far below what a spectrogram resolves - so fading costs a few
multiplies per sample. The carrier offset rides on the same blocks.
"""
import numpy as np

BLOCK = 256
SINUSOIDS = 8


def _tap_gains(rng, n_blocks, block_seconds, doppler_hz, n_taps):
  """Unit-mean-power complex gains (n_taps, n_blocks) with a Jakes Doppler spectrum."""
  t = np.arange(n_blocks) * block_seconds
  angle = rng.uniform(0, 2 * np.pi, (n_taps, SINUSOIDS, 1))
  phase = rng.uniform(0, 2 * np.pi, (n_taps, SINUSOIDS, 1))
  # At most a few hundred radians: float32 cosines and sines are accurate to ~1e-5 rad.
  rotation = (2 * np.pi * doppler_hz * np.cos(angle) * t + phase).astype(np.float32)
  gains = np.cos(rotation).sum(axis=1) + 1j * np.sin(rotation).sum(axis=1)
  return (gains / np.sqrt(SINUSOIDS)).astype(np.complex64)


def apply_channel(rng: np.random.Generator, x: np.ndarray, sample_rate: float, *,
                  doppler_hz: float, delay_spread_s: float, cfo_hz: float) -> np.ndarray:
  """x (complex64, n) through a random multipath channel with Doppler and a carrier offset.

  The average power gain is 1, so a signal keeps its SNR on average; a delay spread of 0 gives
  flat (single-tap) fading.
  """
  n = len(x)
  n_taps = 1 if delay_spread_s <= 0 else int(rng.integers(2, 7))
  delays = np.zeros(n_taps, int)
  powers = np.ones(n_taps)
  if n_taps > 1:
    delays = np.sort(np.round(rng.exponential(delay_spread_s, n_taps) * sample_rate).astype(int))
    delays -= delays[0]
    powers = np.exp(-delays / max(delay_spread_s * sample_rate, 1e-9))
  powers /= powers.sum()
  n_blocks = -(-n // BLOCK)
  gains = _tap_gains(rng, n_blocks, BLOCK / sample_rate, doppler_hz, n_taps)
  gains *= np.sqrt(powers).astype(np.float32)[:, None]
  # Carrier offset exp(j 2 pi f (b * BLOCK + k) / fs): the per-block phase joins the gains, the
  # within-block phase multiplies x as it is copied into the padded buffer. Applied before the
  # taps, it turns each tap's gain by a constant phase - as random as the gain's own phase.
  step = 2 * np.pi * cfo_hz / sample_rate
  gains *= np.exp(1j * step * BLOCK * np.arange(n_blocks)).astype(np.complex64)
  within = np.exp(1j * step * np.arange(BLOCK)).astype(np.complex64)
  longest = delays[-1]
  padded = np.zeros(longest + n_blocks * BLOCK, np.complex64)
  padded[longest:longest + n] = x
  body = padded[longest:].reshape(n_blocks, BLOCK)
  body *= within
  y = np.empty((n_blocks, BLOCK), np.complex64)
  term = np.empty_like(y)
  for tap, delay in enumerate(delays):
    delayed = padded[longest - delay:longest - delay + n_blocks * BLOCK].reshape(n_blocks, BLOCK)
    np.multiply(gains[tap][:, None], delayed, out=y if tap == 0 else term)
    if tap:
      y += term
  return y.reshape(-1)[:n]
