"""Vectorised OFDM modulation of a resource grid at the capture rate."""
import numpy as np
import scipy.fft


def modulate(grid: np.ndarray, first_subcarrier: int, n_fft: int, cp) -> np.ndarray:
  """Resource grid (symbols, K) on subcarriers first_subcarrier.. (relative to DC) -> complex64 IQ.

  Orthonormal IFFT: a resource element of power P puts power P / n_fft into its subcarrier's
  bandwidth (sample_rate / n_fft), where unit-power white noise has power 1 / n_fft; so P is the
  element's SNR against the unit-power noise floor. `cp` holds the cyclic-prefix lengths of one
  period of the pattern (a 0.5 ms half-subframe for LTE / NR), repeated over the grid's symbols.
  The IFFT at the capture rate (n_fft = rate / subcarrier spacing) both oversamples and places the
  band, so no resampling or mixing follows.
  """
  n_symbols, width = grid.shape
  if width > n_fft:
    raise ValueError(f"{width} subcarriers do not fit in an FFT of {n_fft}.")
  cp = np.asarray(cp, np.int64)
  period = len(cp)
  groups = -(-n_symbols // period)  # whole periods; the padding symbols are cut off below
  spectrum = np.zeros((groups * period, n_fft), np.complex64)
  start = first_subcarrier % n_fft
  head = min(width, n_fft - start)  # subcarriers before the wrap to negative frequencies
  spectrum[:n_symbols, start:start + head] = grid[:, :head]
  spectrum[:n_symbols, :width - head] = grid[:, head:]
  symbols = scipy.fft.ifft(spectrum, axis=1, norm="ortho", overwrite_x=True)
  symbols = symbols.reshape(groups, period, n_fft)
  # Per period: each symbol preceded by its last cp samples, assembled by slicing (no gather).
  pieces = [part for p in range(period)
            for part in (symbols[:, p, n_fft - cp[p]:], symbols[:, p])]
  stream = np.concatenate(pieces, axis=1).reshape(-1)
  prefixes = (n_symbols // period) * cp.sum() + cp[:n_symbols % period].sum()
  return stream[:int(prefixes) + n_symbols * n_fft]


def qpsk(rng: np.random.Generator, shape, amplitude: float = 1.0) -> np.ndarray:
  """Random QPSK symbols of power amplitude^2 (complex64)."""
  points = np.array([1 + 1j, 1 - 1j, -1 + 1j, -1 - 1j]) * (amplitude * 0.5 ** 0.5)
  return points.astype(np.complex64)[rng.integers(0, 4, shape, dtype=np.uint8)]
