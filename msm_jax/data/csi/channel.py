"""Multipath channel frequency response per antenna pair and subcarrier (numpy, vectorised).

H[t, pair, k] = sum_paths a * exp(-j 2 pi f_k L / c), L the path length. Static paths: line of
sight,
first-order reflections off the six room surfaces (image method) and the room's furniture. Body
paths: each body-part scatterer p with radar cross-section s reflects with the bistatic radar
amplitude  lambda sqrt(s) / ((4 pi)^1.5 |p - tx| |p - rx|)  (line of sight: lambda / (4 pi L)),
so a path whose length changes at rate dL/dt has Doppler -f dL/dt / c (about 19 Hz per m/s at
5.8 GHz). Antenna pairs are rx-major (pair = rx * n_tx + tx); arrays are linear, half a wavelength
apart, across the tx-rx link.
"""
import numpy as np

from msm_jax.data.csi.layouts import SPEED_OF_LIGHT

# Elements of the (packets, paths, pairs, subcarriers) phase block evaluated at once: large
# enough for vectorisation, small enough to stay in cache-friendly memory.
_CHUNK = 1 << 20


def antenna_array(centre, towards, count: int, wavelength: float) -> np.ndarray:
  """(count, 3) positions of a horizontal linear array at `centre`, perpendicular to the direction
  to `towards`, spaced lambda / 2."""
  direction = np.asarray(towards, np.float64)[:2] - np.asarray(centre, np.float64)[:2]
  across = np.array([-direction[1], direction[0], 0.0]) / np.linalg.norm(direction)
  offsets = (np.arange(count) - (count - 1) / 2) * wavelength / 2
  return np.asarray(centre, np.float64) + offsets[:, None] * across


def pair_lengths(points, tx, rx) -> np.ndarray:
  """Path lengths |p - tx| + |p - rx| (..., P, n_rx * n_tx) (rx-major) of points (..., P, 3) for
  arrays tx (n_tx, 3) and rx (n_rx, 3), with the distances to tx (..., P, n_tx) and rx
  (..., P, n_rx)."""
  to_tx = np.linalg.norm(points[..., None, :] - tx, axis=-1)  # (..., P, n_tx)
  to_rx = np.linalg.norm(points[..., None, :] - rx, axis=-1)  # (..., P, n_rx)
  lengths = to_rx[..., :, None] + to_tx[..., None, :]
  return lengths.reshape(*to_rx.shape[:-1], len(rx) * len(tx)), to_tx, to_rx


def scatter_paths(points, rcs, tx, rx, wavelength: float):
  """(lengths, amplitudes), both (..., P, pairs), of scatterers at points (..., P, 3)."""
  lengths, to_tx, to_rx = pair_lengths(points, tx, rx)
  spread = (to_rx[..., :, None] * to_tx[..., None, :]).reshape(lengths.shape)
  amplitudes = wavelength * np.sqrt(rcs)[..., None] / ((4 * np.pi) ** 1.5 * spread)
  return lengths, amplitudes


def static_paths(room, tx, rx, wavelength: float):
  """(lengths, amplitudes), both (S, pairs): line of sight, 6 wall images, furniture."""
  size = np.array(room.size)
  images = [tx]
  for axis in range(3):
    for wall in (0.0, size[axis]):
      image = tx.copy()
      image[:, axis] = 2 * wall - tx[:, axis]
      images.append(image)
  direct = np.stack([np.linalg.norm(rx[:, None] - image[None], axis=-1).reshape(-1)
                     for image in images])  # (7, pairs), rx-major
  coefficient = np.r_[1.0, np.full(6, room.wall_reflection)][:, None]
  furniture, rcs = room.furniture()
  lengths, amplitudes = scatter_paths(furniture, rcs, tx, rx, wavelength)
  return (np.concatenate([direct, lengths]),
          np.concatenate([coefficient * wavelength / (4 * np.pi * direct), amplitudes]))


def frequency_response(lengths, amplitudes, frequencies) -> np.ndarray:
  """sum_paths amplitude * exp(-j 2 pi f L / c): lengths/amplitudes (T, P, pairs), frequencies (K,)
  -> complex64 (T, pairs, K).

  Phases are evaluated as float32 cos/sin (10x faster than complex exp); the float32 rounding of
  the phase (~1e-4 rad at 10 m) is far below the receiver noise and smooth in time, so it adds no
  Doppler.
  """
  n_time, n_paths, n_pairs = lengths.shape
  response = np.zeros((n_time, n_pairs, len(frequencies)), np.complex64)
  if n_paths == 0:
    return response
  radians_per_metre = (2 * np.pi * np.asarray(frequencies) / SPEED_OF_LIGHT).astype(np.float32)
  step = max(1, _CHUNK // (n_paths * n_pairs * len(frequencies)))
  for start in range(0, n_time, step):
    part = slice(start, start + step)
    phase = lengths[part].astype(np.float32)[..., None] * radians_per_metre
    amp = amplitudes[part].astype(np.float32)[..., None]
    response.real[part] = (amp * np.cos(phase)).sum(axis=1)
    response.imag[part] = -(amp * np.sin(phase)).sum(axis=1)
  return response
