"""LTE / NR numerology and TDD patterns (TS 36.211, TS 38.211, TS 38.101-1): the tables the scene
models draw from.

OFDM is modulated directly at the capture rate with an oversampled FFT of size
sample_rate / subcarrier_spacing, so cyclic prefixes are the standard lengths scaled from the
2048-point reference: 144 * n_fft / 2048 samples, plus the extra samples that make every 0.5 ms
half-subframe exact (16 * n_fft * 2^mu / 2048 on its first symbol: LTE's 160 vs 144).
"""
import numpy as np

# LTE channel bandwidth (MHz) -> resource blocks. (The native FFT sizes 128..2048 do not appear:
# every carrier is modulated with the capture rate's FFT, see above.)
LTE_BANDWIDTHS = {1.4: 6, 3: 15, 5: 25, 10: 50, 15: 75, 20: 100}
LTE_SCS = 15e3
LTE_SYMBOLS_PER_SLOT = 7
# NR FR1 maximum transmission bandwidth: subcarrier spacing (kHz) -> {bandwidth MHz: RBs}.
NR_RB_TABLE = {
    15: {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 40: 216, 50: 270},
    30: {5: 11, 10: 24, 15: 38, 20: 51, 25: 65, 30: 78, 40: 106, 50: 133, 60: 162, 70: 189,
         80: 217, 90: 245, 100: 273},
    60: {10: 11, 15: 18, 20: 24, 25: 31, 30: 38, 40: 51, 50: 65, 60: 79, 70: 93, 80: 107,
         90: 121, 100: 135},
}
NR_SYMBOLS_PER_SLOT = 14
SUBCARRIERS_PER_RB = 12
HALF_SUBFRAME_S = 0.5e-3
# TDD patterns, D(ownlink) / S(pecial) / U(plink); a downlink capture sees the uplink empty.
# LTE (TS 36.211 table 4.2-2): uplink-downlink configuration 0-6 -> subframes 0-9.
LTE_TDD_CONFIGS = {0: "DSUUUDSUUU", 1: "DSUUDDSUUD", 2: "DSUDDDSUDD", 3: "DSUUUDDDDD",
                   4: "DSUUDDDDDD", 5: "DSUDDDDDDD", 6: "DSUUUDSUUD"}
# Downlink symbols (DwPTS) of the LTE special subframe, normal CP (table 4.2-1, configs 0-9).
LTE_DWPTS_SYMBOLS = (3, 9, 10, 11, 12, 3, 9, 10, 11, 6)
# NR slot patterns as operators deploy them (tdd-UL-DL-ConfigurationCommon, TS 38.331): a pattern
# must repeat a whole number of times per 10 ms frame (`tdd_fits`), so DDSU needs 30 kHz.
NR_TDD_PATTERNS = ("DDDSU", "DDDDDDDSUU", "DDSU", "DSUUU", "DDDSUDDSUU", "DDDDDDSUUU")
# Downlink symbols of the NR special slot (then guard and uplink symbols), e.g. 10:2:2 or 6:4:4.
NR_SPECIAL_SYMBOLS = (6, 10, 11, 12)


def fft_size(sample_rate: float, scs: float) -> int:
  """The oversampled FFT size that modulates subcarrier spacing `scs` at `sample_rate`."""
  n_fft = sample_rate / scs
  if abs(n_fft - round(n_fft)) > 1e-9 or round(n_fft) % 128:
    raise ValueError(f"capture rate {sample_rate / 1e6:g} Msps is not a multiple of 128 x "
                     f"{scs / 1e3:g} kHz subcarrier spacing; use a multiple of 7.68 Msps "
                     "(e.g. 61.44 Msps), which fits 15, 30 and 60 kHz numerologies.")
  return int(round(n_fft))


def half_subframe_cp(sample_rate: float, scs: float) -> np.ndarray:
  """CP lengths (samples) of the 7 * 2^mu symbols of one 0.5 ms half-subframe (normal CP)."""
  n_fft = fft_size(sample_rate, scs)
  symbols = int(round(7 * scs / LTE_SCS))
  normal = 144 * n_fft // 2048
  cp = np.full(symbols, normal)
  cp[0] += int(round(sample_rate * HALF_SUBFRAME_S)) - symbols * (n_fft + normal)
  return cp


def tdd_fits(pattern: str, scs_khz: int) -> bool:
  """Whether an NR slot pattern repeats a whole number of times per 10 ms frame (of 10 * scs / 15
  kHz slots)."""
  return (10 * scs_khz // 15) % len(pattern) == 0


def downlink(pattern: str | None, index, symbol, special_symbols: int) -> np.ndarray:
  """Whether symbol `symbol` of slot (NR) / subframe (LTE) `index` (arrays) is downlink under a TDD
  `pattern` (None: FDD, always): in a D, or among the first `special_symbols` of an S."""
  if pattern is None:
    return np.ones(np.broadcast(index, symbol).shape, bool)
  kind = np.array(list(pattern))[np.asarray(index) % len(pattern)]
  return (kind == "D") | ((kind == "S") & (np.asarray(symbol) < special_symbols))


def fits(bandwidth_hz: float, sample_rate: float, guard: float = 0.9) -> bool:
  """Whether a channel of `bandwidth_hz` fits inside `guard` of the capture band."""
  return bandwidth_hz <= guard * sample_rate
