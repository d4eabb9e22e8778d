"""Radio layouts of the WiFi cards behind the public CSI sets: subcarriers, carrier and antennas.

Subcarrier k sits at f_c + k * 312.5 kHz (802.11n OFDM spacing). The two layouts:
  intel20   Intel 5300, 20 MHz: the 30 grouped subcarriers the card reports (Ng = 2:
            -28, -26, ..., -2, -1, 1, 3, ..., 27, 28), 1 kHz packets (UT-HAR, Widar3.0).
  atheros40 Atheros (Atheros CSI Tool), 40 MHz: 114 subcarriers -58..-2 and 2..58 (NTU-Fi),
            500 Hz packets, 2000 per recording (the NTU-Fi sample length; the rate is assumed).
Both are 1 transmit x 3 receive antennas, like the public sets; n_tx > 1 is supported by the
simulator, antenna pairs are then ordered rx-major (pair = rx * n_tx + tx).
"""
import dataclasses

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0
SUBCARRIER_SPACING = 312.5e3


@dataclasses.dataclass(frozen=True)
class Layout:
  """What one card reports: subcarrier indices, carrier, antennas and its usual packet stream."""
  name: str
  subcarriers: tuple[int, ...]
  carrier_hz: float
  n_rx: int = 3
  n_tx: int = 1
  packet_rate: float = 1000.0  # packets per second (configurable per simulation)
  n_packets: int = 1000  # packets in one recording of the public set
  bits: int = 8  # signed bits per real/imaginary CSI value

  @property
  def frequencies(self) -> np.ndarray:
    return self.carrier_hz + SUBCARRIER_SPACING * np.asarray(self.subcarriers, np.float64)

  @property
  def n_pairs(self) -> int:
    return self.n_rx * self.n_tx

  @property
  def wavelength(self) -> float:
    return SPEED_OF_LIGHT / self.carrier_hz


INTEL20 = Layout("intel20", tuple(range(-28, -1, 2)) + (-1,) + tuple(range(1, 28, 2)) + (28,),
                 carrier_hz=5.825e9, packet_rate=1000.0, n_packets=1000)
ATHEROS40 = Layout("atheros40", tuple(range(-58, -1)) + tuple(range(2, 59)), carrier_hz=5.8e9,
                   packet_rate=500.0, n_packets=2000, bits=10)
LAYOUTS = {layout.name: layout for layout in (INTEL20, ATHEROS40)}


def get_layout(name: str) -> Layout:
  if name not in LAYOUTS:
    raise ValueError(f"CSI layout {name!r} is unknown; known: {sorted(LAYOUTS)}.")
  return LAYOUTS[name]
