"""Vectorised OFDM modulation of a resource grid at the capture rate."""
import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def _gather_index(n_fft: int, cp_bytes: bytes):
  """(symbol, column) indices that turn IFFT rows into a stream with cyclic prefixes."""
  cp = np.frombuffer(cp_bytes, np.int64)
  lengths = cp + n_fft
  symbol = np.repeat(np.arange(len(cp)), lengths)
  position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  return symbol, (position - cp[symbol]) % n_fft


def modulate(grid: np.ndarray, first_subcarrier: int, n_fft: int, cp) -> np.ndarray:
  """Resource grid (symbols, K) on subcarriers first_subcarrier.. (relative to DC) -> complex64 IQ.

  Orthonormal IFFT: a resource element of power P puts power P / n_fft into its subcarrier's
  bandwidth (sample_rate / n_fft), where unit-power white noise has power 1 / n_fft; so P is the
  element's SNR against the unit-power noise floor. `cp` holds each symbol's cyclic-prefix length
  (tiled if shorter than the grid).
  """
  n_symbols, width = grid.shape
  bins = (first_subcarrier + np.arange(width)) % n_fft
  if len(np.unique(bins)) != width:
    raise ValueError(f"{width} subcarriers do not fit in an FFT of {n_fft}.")
  spectrum = np.zeros((n_symbols, n_fft), np.complex64)
  spectrum[:, bins] = grid
  symbols = np.fft.ifft(spectrum, axis=1, norm="ortho").astype(np.complex64, copy=False)
  cp = np.resize(np.asarray(cp, np.int64), n_symbols)
  row, column = _gather_index(n_fft, cp.tobytes())
  return symbols[row, column]


def qpsk(rng: np.random.Generator, shape) -> np.ndarray:
  """Unit-power random QPSK symbols (complex64)."""
  bits = rng.integers(0, 2, (2,) + tuple(shape), dtype=np.int8)
  return ((1 - 2 * bits[0]) + 1j * (1 - 2 * bits[1])).astype(np.complex64) * np.float32(0.5 ** 0.5)
