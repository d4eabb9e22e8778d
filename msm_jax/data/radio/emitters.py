"""Other emitters for pretraining diversity: narrowband PSK/QAM, WiFi-like OFDM bursts, radar.

Each returns complex64 IQ of n_samples at the capture rate whose power, while on, sits `snr_db`
above the unit-power noise floor within the emitter's occupied band.
"""
import numpy as np

from msm_jax.data.radio.ofdm import modulate, qpsk

_CONSTELLATIONS = {"bpsk": 2, "qpsk": 4, "8psk": 8, "16qam": 16, "64qam": 64}
RRC_SPAN = 16  # symbols of pulse-shaping filter
WIFI_SCS = 312.5e3
WIFI_SYMBOL_S = 4e-6


def _symbols(rng, kind, n):
  if kind.endswith("psk"):
    return np.exp(2j * np.pi * rng.integers(0, _CONSTELLATIONS[kind], n) / _CONSTELLATIONS[kind])
  side = int(np.sqrt(_CONSTELLATIONS[kind]))
  levels = 2 * rng.integers(0, side, (2, n)) - (side - 1)
  return (levels[0] + 1j * levels[1]) / np.sqrt(2 * (side * side - 1) / 3)


def _rrc(samples_per_symbol: int, rolloff: float) -> np.ndarray:
  """Root-raised-cosine pulse over RRC_SPAN symbols (peak in the middle), unit energy."""
  t = np.arange(RRC_SPAN * samples_per_symbol) / samples_per_symbol - RRC_SPAN / 2  # symbols
  beta = max(rolloff, 1e-6)
  with np.errstate(divide="ignore", invalid="ignore"):
    h = (np.sin(np.pi * t * (1 - beta)) + 4 * beta * t * np.cos(np.pi * t * (1 + beta))) / (
        np.pi * t * (1 - (4 * beta * t) ** 2))
  h[t == 0] = 1 - beta + 4 * beta / np.pi
  edge = np.isclose(np.abs(t), 1 / (4 * beta))  # the removable singularities at +-T / (4 beta)
  h[edge] = beta / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * beta))
                                 + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta)))
  return h / np.sqrt(np.sum(h ** 2))


def narrowband(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
               samples_per_symbol: int, rolloff: float, centre_hz: float, snr_db: float,
               modulation: str = "qpsk") -> np.ndarray:
  """Single-carrier PSK/QAM: symbols through a root-raised-cosine filter (truncated to RRC_SPAN
  symbols, as a transmitter's is), mixed to centre_hz, starting at a random point of a symbol.

  Polyphase form: sample r of symbol period q is sum_j b[q - j] g[j * sps + r], one small matrix
  product for the whole capture. The mixing is folded in: g is the pulse times the carrier, and
  symbol i is turned by the carrier's phase at its start.
  """
  sps = samples_per_symbol
  offset = int(rng.integers(0, sps))
  periods = -(-(n_samples + offset) // sps)
  omega = 2 * np.pi * centre_hz / sample_rate  # radians per sample
  symbols = _symbols(rng, modulation, periods + RRC_SPAN - 1)
  symbols = (symbols * np.exp(1j * omega * sps * np.arange(len(symbols)))).astype(np.complex64)
  # Unit-energy pulse x sqrt(SNR): power SNR / sps, i.e. SNR x the noise in the symbol-rate band.
  pulse = _rrc(sps, rolloff) * np.sqrt(10 ** (snr_db / 10))
  taps = (pulse * np.exp(1j * omega * np.arange(len(pulse)))).astype(np.complex64)
  history = np.lib.stride_tricks.sliding_window_view(symbols, RRC_SPAN)  # [q, k] = b[q + k]
  x = history @ taps.reshape(RRC_SPAN, sps)[::-1]
  return x.reshape(-1)[offset:offset + n_samples]


def _smooth_fft_size(target: float) -> int:
  """The integer nearest `target` with no prime factor above 7 (a prime FFT size costs several
  times more)."""
  def smooth(n):
    for p in (2, 3, 5, 7):
      while n % p == 0:
        n //= p
    return n == 1
  return min((n for n in range(int(target) - 16, int(target) + 17) if n > 0 and smooth(n)),
             key=lambda n: abs(n - target))


def wifi_bursts(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
                centre_hz: float, snr_db: float, duty: float) -> np.ndarray:
  """WiFi-like OFDM bursts: 52 of 64 subcarriers at ~312.5 kHz (DC empty; the FFT size at the
  capture rate is rounded to a fast one, moving the spacing by < 1 %), 4 us symbols with their
  0.8 us CP, bursts of random length (40 us - 2 ms) separated by random gaps so the medium is busy
  `duty` of the time."""
  n_fft = _smooth_fft_size(sample_rate / WIFI_SCS)
  cp = int(round(WIFI_SYMBOL_S * sample_rate)) - n_fft
  n_symbols = n_samples // (n_fft + cp) + 2
  on = np.zeros(n_symbols, bool)
  position = -int(rng.integers(0, 100))
  while position < n_symbols:
    length = int(rng.integers(10, 500))
    on[max(position, 0):position + length] = True
    position += length + int(rng.exponential(length * (1 - duty) / max(duty, 1e-3))) + 1
  k = np.concatenate([np.arange(-26, 0), np.arange(1, 27)])
  grid = np.zeros((n_symbols, 53), np.complex64)
  grid[:, k + 26] = qpsk(rng, (n_symbols, 52), 10 ** (snr_db / 20)) * on[:, None]
  return modulate(grid, int(round(centre_hz / sample_rate * n_fft)) - 26, n_fft, [cp])[:n_samples]


def radar_pulses(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
                 centre_hz: float, bandwidth_hz: float, pulse_s: float, interval_s: float,
                 snr_db: float) -> np.ndarray:
  """Linear-FM (chirp) pulses of pulse_s every interval_s sweeping bandwidth_hz around centre_hz;
  a pulse as long as the interval is a continuous sawtooth sweep. Pulses start on the nearest
  sample (as a radar's clock would have them), so one computed pulse is copied into place."""
  period = interval_s * sample_rate  # samples; not a whole number in general
  starts = np.round((np.arange(-1, n_samples / period + 1) - rng.uniform(0, 1)) * period)
  slope = bandwidth_hz / pulse_s * rng.choice([-1, 1])
  tau = np.arange(max(1, int(round(pulse_s * sample_rate)))) / sample_rate
  phase = 2 * np.pi * ((centre_hz - slope * pulse_s / 2) * tau + slope * tau * tau / 2)
  pulse = (np.sqrt(10 ** (snr_db / 10) * bandwidth_hz / sample_rate) * np.exp(1j * phase))
  pulse = pulse.astype(np.complex64)
  x = np.zeros(n_samples, np.complex64)
  for start in starts.astype(int):
    first, stop = max(start, 0), min(start + len(pulse), n_samples)
    if first < stop:
      x[first:stop] = pulse[first - start:stop - start]
  return x
