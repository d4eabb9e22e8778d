"""Multipath channel frequency response per antenna pair and subcarrier (numpy, vectorised).

H[t, pair, k] = sum_paths a * exp(-j 2 pi f_k L / c), L the path length. Static paths: line of
sight, reflections off walls, floor and ceiling up to second order (image method), the room's
furniture and its diffuse tail (exponential power-delay profile), giving RMS delay spreads of
10-40 ns and frequency-selective fading across a 40 MHz band, as measured indoors. Body paths:
each body-part scatterer p with radar cross-section s reflects with the bistatic radar amplitude
lambda sqrt(s) / ((4 pi)^1.5 |p - tx| |p - rx|)  (line of sight: lambda / (4 pi L)), so a path
whose length changes at rate dL/dt has Doppler -f dL/dt / c (about 19 Hz per m/s at 5.8 GHz).
Antenna pairs are rx-major (pair = rx * n_tx + tx); arrays are linear, half a wavelength apart,
across the tx-rx link.
"""
import numpy as np

from msm_jax.data.csi.layouts import SPEED_OF_LIGHT

# Elements of the (packets, pairs, paths, subcarriers) phase block evaluated at once: large
# enough for vectorisation, small enough to stay in cache-friendly memory.
_CHUNK = 1 << 20
# Specular reflections are traced to second order; the many weaker higher-order paths are what the
# room's diffuse tail stands for.
IMAGE_ORDER = 2


def antenna_array(centre, towards, count: int, wavelength: float) -> np.ndarray:
  """(count, 3) positions of a horizontal linear array at `centre`, perpendicular to the direction
  to `towards`, spaced lambda / 2."""
  direction = np.asarray(towards, np.float64)[:2] - np.asarray(centre, np.float64)[:2]
  across = np.array([-direction[1], direction[0], 0.0]) / np.linalg.norm(direction)
  offsets = (np.arange(count) - (count - 1) / 2) * wavelength / 2
  return np.asarray(centre, np.float64) + offsets[:, None] * across


def distances(points, antennas) -> np.ndarray:
  """|p - a| (..., P, A) of points (..., P, 3) to antennas (A, 3), summed coordinate by
  coordinate (3x faster than np.linalg.norm over a trailing axis of 3)."""
  points, antennas = np.asarray(points), np.asarray(antennas)
  return np.sqrt(sum((points[..., i, None] - antennas[:, i]) ** 2 for i in range(3)))


def pair_lengths(points, tx, rx) -> np.ndarray:
  """Path lengths |p - tx| + |p - rx| (..., P, n_rx * n_tx) (rx-major) of points (..., P, 3) for
  arrays tx (n_tx, 3) and rx (n_rx, 3), with the distances to tx (..., P, n_tx) and rx
  (..., P, n_rx)."""
  to_tx, to_rx = distances(points, tx), distances(points, rx)
  lengths = to_rx[..., :, None] + to_tx[..., None, :]
  return lengths.reshape(*to_rx.shape[:-1], len(rx) * len(tx)), to_tx, to_rx


def scatter_paths(points, rcs, tx, rx, wavelength: float):
  """(lengths, amplitudes), both (..., P, pairs), of scatterers at points (..., P, 3)."""
  lengths, to_tx, to_rx = pair_lengths(points, tx, rx)
  spread = (to_rx[..., :, None] * to_tx[..., None, :]).reshape(lengths.shape)
  amplitudes = wavelength * np.sqrt(rcs)[..., None] / ((4 * np.pi) ** 1.5 * spread)
  return lengths, amplitudes


def image_sources(size, points, order: int):
  """Image-method mirror images (I, n, 3) of `points` (n, 3) in the box [0, size], up to `order`
  reflections, and each image's reflection count (I,). Along an axis of length D a coordinate s
  has images 2 m D + s (2 |m| reflections) and 2 m D - s (|2 m - 1| reflections)."""
  m = np.repeat(np.arange(-order, order + 1), 2)
  flip = np.tile([0, 1], 2 * order + 1)
  bounces = np.abs(2 * m - flip)
  m, flip, bounces = m[bounces <= order], flip[bounces <= order], bounces[bounces <= order]
  index = np.stack(np.meshgrid(*[np.arange(len(m))] * 3, indexing="ij"), -1).reshape(-1, 3)
  count = bounces[index].sum(axis=1)
  index, count = index[count <= order], count[count <= order]
  size = np.asarray(size, np.float64)
  sign = 1 - 2 * flip[index][:, None]
  return 2 * m[index][:, None] * size + sign * np.asarray(points)[:, None], count


def static_paths(room, tx, rx, wavelength: float):
  """(lengths, amplitudes), both (S, pairs): line of sight and wall, floor and ceiling reflections
  up to IMAGE_ORDER bounces (each scaling the amplitude by room.wall_reflection), furniture,
  and the room's diffuse tail (plane waves across the small arrays)."""
  images, bounces = image_sources(room.size, tx, IMAGE_ORDER)  # (I, n_tx, 3)
  direct = distances(images, rx).transpose(0, 2, 1).reshape(len(images), -1)  # rx-major
  specular = room.wall_reflection ** bounces[:, None] * wavelength / (4 * np.pi * direct)
  furniture, rcs = room.furniture()
  lengths, amplitudes = scatter_paths(furniture, rcs, tx, rx, wavelength)
  delays, powers, arrival, departure = room.diffuse()
  tx_centre, rx_centre = tx.mean(axis=0), rx.mean(axis=0)
  line_of_sight = np.linalg.norm(rx_centre - tx_centre)
  # A plane wave from direction u reaches an antenna u . offset earlier than the array centre.
  diffuse = (line_of_sight + SPEED_OF_LIGHT * delays[:, None, None]
             - (arrival @ (rx - rx_centre).T)[:, :, None]
             - (departure @ (tx - tx_centre).T)[:, None, :]).reshape(len(delays), -1)
  scattered = np.sqrt(powers)[:, None] * wavelength / (4 * np.pi * line_of_sight)
  return (np.concatenate([direct, lengths, diffuse]),
          np.concatenate([specular, amplitudes, np.broadcast_to(scattered, diffuse.shape)]))


def frequency_response(lengths, amplitudes, frequencies) -> np.ndarray:
  """sum_paths amplitude * exp(-j 2 pi f L / c): lengths/amplitudes (T, P, pairs), frequencies (K,)
  -> complex64 (T, pairs, K).

  Phases are evaluated as float32 cos/sin (10x faster than complex exp); the float32 rounding of
  the phase (~1e-4 rad at 10 m) is far below the receiver noise and smooth in time, so it adds no
  Doppler. The sum over paths is a batched (1 x P) @ (P x K) product, 2-3x faster than a
  strided sum.
  """
  n_time, n_paths, n_pairs = lengths.shape
  response = np.zeros((n_time, n_pairs, len(frequencies)), np.complex64)
  if n_paths == 0:
    return response
  radians_per_metre = (2 * np.pi * np.asarray(frequencies) / SPEED_OF_LIGHT).astype(np.float32)
  step = max(1, _CHUNK // (n_paths * n_pairs * len(frequencies)))
  for start in range(0, n_time, step):
    part = slice(start, start + step)
    phase = lengths[part].astype(np.float32).transpose(0, 2, 1)[..., None] * radians_per_metre
    amp = amplitudes[part].astype(np.float32).transpose(0, 2, 1)[:, :, None, :]
    response.real[part] = (amp @ np.cos(phase))[:, :, 0]
    response.imag[part] = -(amp @ np.sin(phase, out=phase))[:, :, 0]
  return response
