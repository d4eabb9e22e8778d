"""A CSI recording in the one in-memory layout, and its reduction to a model input.

Every reader and the simulator produce amplitude float32 (antennas, subcarriers, packets), antennas
being transmit/receive pairs. `csi_to_power` turns that into the model's (H, W, C) power array:
H subcarriers x W time steps x C antennas, by cropping and block-averaging power (never
interpolating), so that the simulator, the dataset builder and prediction on user files all feed
the model the same thing. Power |H|^2, not amplitude, is averaged and stored because a block's mean
power is its received energy; the input pipeline takes 10*log10 of it (normalize.py), so the model
sees CSI amplitude in dB, 20*log10 |H|.
"""
import dataclasses

import numpy as np


class CsiFileError(ValueError):
  """A CSI file that cannot be read: truncated, wrongly shaped, or of an unknown class."""

  def __init__(self, path, problem: str):
    super().__init__(f"{path}: {problem}")
    self.path = str(path)


@dataclasses.dataclass
class CsiRecording:
  """amplitude: float32 (antennas, subcarriers, packets); info: format, label, domain fields."""
  amplitude: np.ndarray
  info: dict = dataclasses.field(default_factory=dict)


def block_slices(n: int, m: int) -> tuple[int, int]:
  """(start, factor) of the reduction of n samples to m: the centred m * (n // m) are kept and
  averaged in blocks of `factor` = n // m. Raises if m > n (no interpolation)."""
  if not 1 <= m <= n:
    raise ValueError(f"cannot reduce {n} samples to {m}: needs 1 <= {m} <= {n} (CSI is cropped and "
                     "averaged, never interpolated).")
  factor = n // m
  return (n - m * factor) // 2, factor


def block_centres(n: int, m: int) -> np.ndarray:
  """Indices of the middle sample of each of the m blocks `block_slices(n, m)` averages: the
  simulator computes only these when it makes a small input directly."""
  start, factor = block_slices(n, m)
  return start + factor * np.arange(m) + factor // 2


def csi_to_power(amplitude, shape) -> np.ndarray:
  """CSI amplitude (antennas, subcarriers, packets) -> float32 power (H, W, C) for the model.

  shape = (H subcarriers, W time steps, C antennas). Antennas: the first C are kept. Subcarriers and
  packets: the centred H * (K // H) (W * (T // W)) are kept and power (amplitude squared) is
  averaged over blocks of K // H (T // W), i.e. a box low-pass before decimation. Raises ValueError
  when the recording is smaller than `shape` in any axis.
  """
  amplitude = np.asarray(amplitude)
  height, width, channels = (int(d) for d in shape)
  if amplitude.ndim != 3:
    raise ValueError(f"CSI amplitude must be (antennas, subcarriers, packets); got "
                     f"{amplitude.shape}.")
  n_ant, n_sub, n_time = amplitude.shape
  if not 1 <= channels <= n_ant:
    raise ValueError(f"{channels} channels requested from CSI with {n_ant} antennas.")
  power = np.square(amplitude[:channels].astype(np.float32))
  s0, fs = block_slices(n_sub, height)
  t0, ft = block_slices(n_time, width)
  power = power[:, s0:s0 + height * fs, t0:t0 + width * ft]
  power = power.reshape(channels, height, fs, width, ft).mean(axis=(2, 4), dtype=np.float32)
  return np.ascontiguousarray(power.transpose(1, 2, 0))
