"""Scenes: emitters through their channels at a capture rate, spectrogram + per-pixel labels.

A scene is a list of components (class name, IQ at the capture rate). The capture is their sum
plus unit-power complex white noise (independent per channel C; every channel sees the same
emitters), put through the one STFT (stft.py). A labelled scene also puts each component through
the same STFT on its own, and labels come from the components' own reduced power: a pixel takes
the class of the strongest component whose power there is at least LABEL_THRESHOLD_DB relative to
the noise floor (1), else 'noise' - so lightly loaded resource blocks, sync bursts and fading nulls
are labelled by where the energy really is, not by the rectangle a signal is allowed to occupy. (A
component may itself be of class 'noise': an interferer that is neither of the labelled classes.)

LTE and NR carriers are a `Carrier` configuration (what generators.py draws and holds out) made
into IQ by `carrier_iq`; `random_other` draws one of the other emitters.
"""
import dataclasses
import functools

import numpy as np
import scipy.special

from msm_jax.data.radio import numerology as nm
from msm_jax.data.radio.channel import apply_channel
from msm_jax.data.radio.emitters import narrowband, radar_pulses, wifi_bursts
from msm_jax.data.radio.lte import lte_signal
from msm_jax.data.radio.nr import nr_signal
from msm_jax.data.radio.stft import StftSpec, power_spectrogram, spec_for_samples

# Below -6 dB a component adds less than a quarter of the floor: buried in an averaged pixel.
LABEL_THRESHOLD_DB = -6.0
GUARD = 0.9  # emitters stay inside this fraction of the capture band (anti-alias filter edges)


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """Capture and channel ranges of a scene model (defaults: the radio foundation model paper's,
  with SNRs from -5 dB instead of 0: weak distant cells, still above the -6 dB label threshold)."""
  sample_rate: float = 61.44e6
  frame_seconds: float = 16e-3
  snr_db: tuple[float, float] = (-5.0, 30.0)  # per signal, within its band, vs unit-power noise
  doppler_hz: tuple[float, float] = (0.0, 500.0)
  delay_spread_s: tuple[float, float] = (30e-9, 300e-9)
  cfo_hz: float = 1e3  # carrier offsets drawn from +-cfo_hz on top of the band placement

  @property
  def n_samples(self) -> int:
    return int(round(self.sample_rate * self.frame_seconds))


DEFAULT = SceneConfig()
# Configurable captures: multiples of 7.68 Msps (128 x 60 kHz: every numerology's FFT is a whole
# size) wide enough for the 20 MHz emitters, and frames of 10-40 ms.
RATE_STEP, RATE_RANGE, FRAME_RANGE = 7.68e6, (30.72e6, 122.88e6), (10e-3, 40e-3)


@functools.lru_cache(maxsize=16)
def capture_config(sample_rate: float = DEFAULT.sample_rate,
                   frame_seconds: float = DEFAULT.frame_seconds) -> SceneConfig:
  """DEFAULT with another capture rate (Hz) and frame length (s), after checking both."""
  steps = sample_rate / RATE_STEP
  if not RATE_RANGE[0] <= sample_rate <= RATE_RANGE[1] or abs(steps - round(steps)) > 1e-6:
    raise ValueError(f"capture sample_rate={sample_rate:g} Hz: use a multiple of 7.68 Msps from "
                     "30.72 to 122.88 Msps (e.g. 61.44e6), where every LTE / NR numerology has a "
                     "whole FFT size and 20 MHz channels fit.")
  if not FRAME_RANGE[0] <= frame_seconds <= FRAME_RANGE[1]:
    raise ValueError(f"capture frame_seconds={frame_seconds:g}: use 0.01 to 0.04 (10-40 ms).")
  return dataclasses.replace(DEFAULT, sample_rate=float(sample_rate),
                             frame_seconds=float(frame_seconds))


def capture_spec(shape, config: SceneConfig = DEFAULT) -> StftSpec:
  """The STFT giving `shape` (Nt, Nf, ...) from one frame of `config`; errors if it cannot."""
  return spec_for_samples(config.n_samples, shape, f"a {config.frame_seconds * 1e3:g} ms frame at "
                          f"{config.sample_rate / 1e6:g} Msps")


@functools.lru_cache(maxsize=1)
def _noise_levels() -> np.ndarray:
  """2^16 equally likely Gaussian levels (the quantiles) of variance 1/2, float32: noise drawn from
  them costs a third of standard_normal's and, summed by a 1024-point FFT, is indistinguishable."""
  levels = scipy.special.ndtri((np.arange(2 ** 16) + 0.5) / 2 ** 16)
  levels = (levels * np.sqrt(0.5 / np.mean(levels ** 2))).astype(np.float32)
  levels.flags.writeable = False
  return levels


def render(rng: np.random.Generator, components, shape, config: SceneConfig = DEFAULT,
           classes: tuple[str, ...] = ()):
  """[(class name, iq)] -> (float32 power `shape` (Nt, Nf, C), uint8 labels (Nt, Nf)).

  Labels index `classes` (classes[0] is the noise class); unlabelled scenes pass no classes and
  get None.
  """
  n_time, n_freq, n_channels = shape
  spec = capture_spec(shape, config)
  signal = np.zeros(config.n_samples, np.complex64)
  for _, iq in components:
    signal += iq
  power = np.empty(shape, np.float32)
  levels = _noise_levels()
  for channel in range(n_channels):
    # Unit-power complex noise, its re and im interleaved, then the emitters on top.
    capture = levels[rng.integers(0, len(levels), 2 * config.n_samples, np.uint16)]
    capture = capture.view(np.complex64)
    capture += signal
    power[..., channel] = power_spectrogram(capture, spec)
  if not classes:
    return power, None
  labels = np.zeros((n_time, n_freq), np.uint8)
  if components:
    powers = np.stack([power_spectrogram(iq, spec) for _, iq in components])
    ids = np.array([classes.index(name) for name, _ in components], np.uint8)
    strongest = powers.argmax(axis=0)
    audible = powers.max(axis=0) >= 10 ** (LABEL_THRESHOLD_DB / 10)
    labels = np.where(audible, ids[strongest], 0).astype(np.uint8)
  return power, labels


def _placement(rng, bandwidth_hz, step_hz, config):
  """A random centre (in whole `step_hz`) keeping the band inside the guarded capture band."""
  room = max(0.0, (GUARD * config.sample_rate - bandwidth_hz) / 2)
  return int(np.floor(rng.uniform(-room, room) / step_hz))


def _channel(rng, iq, config):
  return apply_channel(rng, iq, config.sample_rate, doppler_hz=rng.uniform(*config.doppler_hz),
                       delay_spread_s=rng.uniform(*config.delay_spread_s),
                       cfo_hz=rng.uniform(-config.cfo_hz, config.cfo_hz))


@dataclasses.dataclass(frozen=True)
class Carrier:
  """An LTE or NR carrier's configuration; `carrier_iq` draws the rest (SNR, place, channel...)."""
  kind: str  # 'lte' or 'nr'
  bandwidth_mhz: float  # a channel bandwidth of numerology's tables
  scs_khz: int  # subcarrier spacing: 15 for LTE, 15 or 30 for NR
  tdd: str | None  # None: FDD; else the TDD subframe (LTE) / slot (NR) pattern of numerology.py
  load: float  # share of slots and RBs scheduled; 1 is fully loaded (every slot, every RB)


def carrier_iq(rng, carrier: Carrier, config: SceneConfig = DEFAULT) -> np.ndarray:
  """The carrier at the capture: random SNR, placement, cell or SS/PBCH settings, TDD special
  slot / subframe length, and channel."""
  scs = carrier.scs_khz * 1e3
  table = nm.LTE_BANDWIDTHS if carrier.kind == "lte" else nm.NR_RB_TABLE[carrier.scs_khz]
  occupied = table[carrier.bandwidth_mhz] * nm.SUBCARRIERS_PER_RB * scs
  common = dict(bandwidth_mhz=carrier.bandwidth_mhz, snr_db=rng.uniform(*config.snr_db),
                offset_subcarriers=_placement(rng, occupied, scs, config), tdd=carrier.tdd,
                load=carrier.load)
  if carrier.kind == "lte":
    iq = lte_signal(rng, config.n_samples, config.sample_rate, cell_id=int(rng.integers(0, 504)),
                    special_symbols=int(rng.choice(nm.LTE_DWPTS_SYMBOLS)), **common)
  else:
    iq = nr_signal(rng, config.n_samples, config.sample_rate, scs_khz=carrier.scs_khz,
                   ssb_period_ms=int(rng.choice([10, 20, 20])),
                   special_symbols=int(rng.choice(nm.NR_SPECIAL_SYMBOLS)), **common)
  return _channel(rng, iq, config)


def random_other(rng, config: SceneConfig = DEFAULT) -> np.ndarray:
  """A narrowband PSK/QAM carrier, WiFi-like bursts or radar / chirp pulses (uniformly)."""
  fs, snr = config.sample_rate, rng.uniform(*config.snr_db)
  kind = int(rng.integers(3))
  if kind == 0:
    sps = int(rng.integers(16, 1025))
    iq = narrowband(rng, config.n_samples, fs, samples_per_symbol=sps,
                    rolloff=rng.uniform(0.1, 0.5),
                    centre_hz=_placement(rng, 1.5 * fs / sps, 1, config), snr_db=snr,
                    modulation=str(rng.choice(["bpsk", "qpsk", "8psk", "16qam", "64qam"])))
  elif kind == 1:
    iq = wifi_bursts(rng, config.n_samples, fs, centre_hz=_placement(rng, 20e6, 1, config),
                     snr_db=snr, duty=rng.uniform(0.1, 0.9))
  else:
    bandwidth = rng.uniform(0.5e6, 0.4 * fs)
    interval = rng.uniform(50e-6, 2e-3)
    iq = radar_pulses(rng, config.n_samples, fs, centre_hz=_placement(rng, bandwidth, 1, config),
                      bandwidth_hz=bandwidth, pulse_s=interval * rng.uniform(0.02, 1.0),
                      interval_s=interval, snr_db=snr)
  return _channel(rng, iq, config)
