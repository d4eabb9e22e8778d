"""Other emitters for pretraining diversity: narrowband PSK/QAM, WiFi-like OFDM bursts, radar.

Each returns complex64 IQ of n_samples at the capture rate whose power, while on, sits `snr_db`
above the unit-power noise floor within the emitter's occupied band.
"""
import numpy as np

from msm_jax.data.radio.ofdm import modulate, qpsk

_CONSTELLATIONS = {"bpsk": 2, "qpsk": 4, "8psk": 8, "16qam": 16, "64qam": 64}
WIFI_SCS = 312.5e3
WIFI_SYMBOL_S = 4e-6


def _symbols(rng, kind, n):
  if kind.endswith("psk"):
    return np.exp(2j * np.pi * rng.integers(0, _CONSTELLATIONS[kind], n) / _CONSTELLATIONS[kind])
  side = int(np.sqrt(_CONSTELLATIONS[kind]))
  levels = 2 * rng.integers(0, side, (2, n)) - (side - 1)
  return (levels[0] + 1j * levels[1]) / np.sqrt(2 * (side * side - 1) / 3)


def narrowband(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
               samples_per_symbol: int, rolloff: float, centre_hz: float, snr_db: float,
               modulation: str = "qpsk") -> np.ndarray:
  """Single-carrier PSK/QAM with root-raised-cosine pulses, made in the frequency domain.

  An impulse train of symbols every samples_per_symbol samples has the symbols' DFT repeated
  along frequency; multiplying by the RRC response filters it exactly (circularly) and shifting
  the bins places it at centre_hz, so the whole emitter costs one FFT.
  """
  n_symbols = -(-n_samples // samples_per_symbol)
  n = n_symbols * samples_per_symbol
  spectrum = np.fft.fft(_symbols(rng, modulation, n_symbols))
  f = np.fft.fftfreq(n) * samples_per_symbol  # in units of the symbol rate
  edge = np.abs(f) - (1 - rolloff) / 2
  rrc = np.where(edge <= 0, 1.0, np.sqrt(0.5 * (1 + np.cos(np.pi * np.clip(edge, 0, rolloff)
                                                         / max(rolloff, 1e-9)))))
  rrc[np.abs(f) > (1 + rolloff) / 2] = 0.0
  shift = int(round(centre_hz * n / sample_rate))
  shaped = np.roll(spectrum[np.arange(n) % n_symbols] * rrc, shift)
  x = np.fft.ifft(shaped)[:n_samples]
  bandwidth = sample_rate / samples_per_symbol  # noise power in the symbol-rate band
  x *= np.sqrt(10 ** (snr_db / 10) * bandwidth / sample_rate / np.mean(np.abs(x) ** 2))
  return x.astype(np.complex64)


def wifi_bursts(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
                centre_hz: float, snr_db: float, duty: float) -> np.ndarray:
  """WiFi-like OFDM bursts: 52 of 64 subcarriers at ~312.5 kHz (DC empty), 0.8 us CP, bursts of
  random length (40 us - 2 ms) separated by random gaps so the medium is busy `duty` of the time."""
  n_fft = int(round(sample_rate / WIFI_SCS))
  cp = int(round(0.8e-6 * sample_rate))
  n_symbols = n_samples // (n_fft + cp) + 2
  on = np.zeros(n_symbols, bool)
  position = -int(rng.integers(0, 100))
  while position < n_symbols:
    length = int(rng.integers(10, 500))
    on[max(position, 0):position + length] = True
    position += length + int(rng.exponential(length * (1 - duty) / max(duty, 1e-3))) + 1
  k = np.concatenate([np.arange(-26, 0), np.arange(1, 27)])
  grid = np.zeros((n_symbols, 53), np.complex64)
  grid[:, k + 26] = qpsk(rng, (n_symbols, 52)) * on[:, None] * np.float32(10 ** (snr_db / 20))
  return modulate(grid, int(round(centre_hz / sample_rate * n_fft)) - 26, n_fft, [cp])[:n_samples]


def radar_pulses(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
                 centre_hz: float, bandwidth_hz: float, pulse_s: float, interval_s: float,
                 snr_db: float) -> np.ndarray:
  """Linear-FM (chirp) pulses of pulse_s every interval_s sweeping bandwidth_hz around centre_hz;
  a pulse as long as the interval is a continuous sawtooth sweep."""
  t = (np.arange(n_samples) / sample_rate + rng.uniform(0, interval_s)) % interval_s
  on = np.flatnonzero(t < pulse_s)
  tau = t[on]
  slope = bandwidth_hz / pulse_s * rng.choice([-1, 1])
  phase = 2 * np.pi * ((centre_hz - slope * pulse_s / 2) * tau + slope * tau * tau / 2)
  x = np.zeros(n_samples, np.complex64)
  x[on] = np.sqrt(10 ** (snr_db / 10) * bandwidth_hz / sample_rate) * np.exp(1j * phase)
  return x
