"""NR downlink-like signal (TS 38.211): numerology mu, 14-symbol slots, normal CP, FDD or TDD.

Per slot: a CORESET on the first 1-2 symbols over a fixed set of resource blocks (when a PDCCH is
sent), then data (PDSCH, with its DM-RS inside) on one contiguous random block of resource blocks
(a `load` fraction of slots, each using at least `load` of the RBs); no always-on reference
signal. At full load (1) every slot carries data on every RB, from the first symbol on around the
CORESET (rate-matched), so the whole grid is occupied. SS/PBCH bursts every `ssb_period_ms`
(20 ms default): L blocks of 20 RBs x 4 symbols (PSS, PBCH, SSS + PBCH, PBCH) at symbols 2, 8, 16,
22, ... of the burst's 5 ms half-frame; the PSS / SSS symbols' unused subcarriers stay empty (no
data is mapped into an SS/PBCH block). A TDD slot pattern (e.g. 'DDDSU', numerology.py) leaves
uplink slots empty and the special slot after its first `special_symbols`, and sends only the
SS/PBCH blocks that fall in downlink symbols. Resource elements are unit-power QPSK x sqrt(SNR).
"""
import numpy as np

from msm_jax.data.radio import numerology as nm
from msm_jax.data.radio.ofdm import modulate, qpsk

SSB_RBS = 20
SSB_FIRST_SYMBOLS = np.array([2, 8, 16, 22, 30, 36, 44, 50])  # cases A / C, up to L = 8
_SSB = np.zeros((4, 240), bool)  # SS/PBCH block: symbol x subcarrier occupancy
_SSB[0, 56:183] = _SSB[1] = _SSB[3] = True  # PSS on 127 subcarriers; PBCH on all 240
_SSB[2, :48] = _SSB[2, 56:183] = _SSB[2, 192:] = True  # SSS + PBCH edges


def resource_mask(rng, n_rb: int, mu: int, first_slot: int, n_slots: int, *, ssb_period_ms: int,
                  ssb_count: int, tdd: str | None, special_symbols: int, load: float) -> np.ndarray:
  """Occupied resource elements (n_slots * 14 symbols, 12 * n_rb subcarriers)."""
  width = nm.SUBCARRIERS_PER_RB * n_rb
  n_symbols = n_slots * nm.NR_SYMBOLS_PER_SLOT
  slot = first_slot + np.arange(n_symbols) // nm.NR_SYMBOLS_PER_SLOT
  symbol = np.arange(n_symbols) % nm.NR_SYMBOLS_PER_SLOT
  local = slot - first_slot
  rb = np.arange(width) // nm.SUBCARRIERS_PER_RB
  downlink = nm.downlink(tdd, slot, symbol, special_symbols)
  coreset_symbols = int(rng.integers(1, 3))
  coreset_rbs = min(n_rb, 6 * int(rng.integers(2, 9)))
  coreset_start = int(rng.integers(0, n_rb - coreset_rbs + 1))
  pdcch = rng.random(n_slots) < load  # an idle cell (load 0) sends only its SS/PBCH bursts
  coreset = ((symbol < coreset_symbols) & pdcch[local])[:, None] & (
      (rb >= coreset_start) & (rb < coreset_start + coreset_rbs))[None, :]
  # A scheduled slot uses one contiguous block of at least `load` of the RBs (all at full load).
  size = np.maximum(1, np.round(n_rb * rng.uniform(load, 1.0, n_slots))).astype(int)
  start = (rng.random(n_slots) * (n_rb - size + 1)).astype(int)
  stop = start + size
  scheduled = rng.random(n_slots) < load
  first_data = 0 if load >= 1 else coreset_symbols  # full load: around the CORESET (module doc)
  data = ((symbol >= first_data) & scheduled[local])[:, None] & (
      (rb[None, :] >= start[local][:, None]) & (rb[None, :] < stop[local][:, None]))
  mask = (coreset | data) & downlink[:, None]
  # SS/PBCH: bursts in the first half-frame of every period; data is rate-matched around them.
  slots_per_ms = 2 ** mu
  in_half_frame = (slot % (5 * slots_per_ms)) * nm.NR_SYMBOLS_PER_SLOT + symbol
  burst = (slot // (ssb_period_ms * slots_per_ms) * ssb_period_ms * slots_per_ms
           + 5 * slots_per_ms > slot)
  ssb_k0 = nm.SUBCARRIERS_PER_RB * int(rng.integers(0, n_rb - SSB_RBS + 1))
  for first in SSB_FIRST_SYMBOLS[:ssb_count]:
    # A burst's half-frame starts a frame, where the TDD pattern restarts: a block is sent if its
    # last symbol (and so the whole block, inside one slot) is downlink.
    if not nm.downlink(tdd, first // nm.NR_SYMBOLS_PER_SLOT,
                       first % nm.NR_SYMBOLS_PER_SLOT + 3, special_symbols):
      continue
    for row in range(4):
      rows = burst & (in_half_frame == first + row)
      mask[rows, ssb_k0:ssb_k0 + 240] = _SSB[row]
  return mask


def nr_signal(rng: np.random.Generator, n_samples: int, sample_rate: float, *, scs_khz: int,
              bandwidth_mhz: int, offset_subcarriers: int, snr_db: float, ssb_period_ms: int = 20,
              tdd: str | None = None, special_symbols: int = 10,
              load: float = 0.5) -> np.ndarray:
  """n_samples of NR downlink (complex64) centred offset_subcarriers * scs from DC.

  The capture starts at a random slot within the SSB period and a random sample inside it.
  """
  mu = int(np.log2(scs_khz // 15))
  if tdd and not nm.tdd_fits(tdd, scs_khz):
    raise ValueError(f"NR TDD pattern {tdd!r} at {scs_khz} kHz does not repeat a whole number of "
                     "times per 10 ms frame.")
  n_rb = nm.NR_RB_TABLE[scs_khz][bandwidth_mhz]
  if n_rb < SSB_RBS:
    raise ValueError(f"NR {bandwidth_mhz} MHz at {scs_khz} kHz has {n_rb} RBs, fewer than the "
                     f"{SSB_RBS} of an SS/PBCH block.")
  n_fft = nm.fft_size(sample_rate, scs_khz * 1e3)
  slots_per_ms = 2 ** mu
  slot_samples = int(round(sample_rate * 1e-3 / slots_per_ms))
  n_slots = n_samples // slot_samples + 2
  # Start on a half-subframe boundary, where the CP pattern (long first CP) restarts.
  align = max(1, slots_per_ms // 2)
  first_slot = align * int(rng.integers(0, ssb_period_ms * slots_per_ms // align))
  ssb_count = 4 if mu == 0 else int(rng.choice([4, 8]))
  mask = resource_mask(rng, n_rb, mu, first_slot, n_slots, ssb_period_ms=ssb_period_ms,
                       ssb_count=ssb_count, tdd=tdd, special_symbols=special_symbols, load=load)
  grid = qpsk(rng, mask.shape, 10 ** (snr_db / 20))
  grid *= mask
  iq = modulate(grid, offset_subcarriers - mask.shape[1] // 2, n_fft,
                nm.half_subframe_cp(sample_rate, scs_khz * 1e3))
  start = int(rng.integers(0, slot_samples))
  return iq[start:start + n_samples]
