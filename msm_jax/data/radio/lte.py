"""LTE downlink-like signal (TS 36.211 frame structure, port 0, normal CP, FDD or TDD).

Per 0.5 ms slot of 7 symbols: cell reference signals on symbols 0 and 4 on every 6th subcarrier
across the whole band (shifted by cell id mod 6, by 3 more on symbol 4) - always on, whatever the
load; PSS / SSS on the central 62 subcarriers (FDD: symbols 6 / 5 of slots 0 and 10; TDD: the SSS
on the last symbol of subframes 0 and 5, the PSS on the third of subframes 1 and 6); PBCH on the
central 72 subcarriers (symbols 0-3 of slot 1); a control region of 1-3 symbols at the start of
each subframe across the band (1-2 in a special subframe); data resource blocks drawn per 1 ms
subframe with a random load (all of them at load 1). A TDD subframe pattern (numerology.py) leaves
uplink subframes empty and the special subframe after its first `special_symbols` (DwPTS, which
carries no data when only 3 symbols long). The DC subcarrier is unused. Every occupied resource
element carries unit-power QPSK times sqrt(SNR), so a fully loaded band sits `snr_db` above the
unit-power noise floor.
"""
import numpy as np

from msm_jax.data.radio import numerology as nm
from msm_jax.data.radio.ofdm import modulate, qpsk


def resource_mask(rng, n_rb: int, first_slot: int, n_slots: int, cell_id: int, load: float,
                  tdd: str | None = None, special_symbols: int = 10) -> np.ndarray:
  """Occupied resource elements (n_slots * 7 symbols, 12 * n_rb subcarriers, DC excluded)."""
  width = nm.SUBCARRIERS_PER_RB * n_rb
  n_symbols = n_slots * nm.LTE_SYMBOLS_PER_SLOT
  slot = first_slot + np.arange(n_symbols) // nm.LTE_SYMBOLS_PER_SLOT
  symbol = np.arange(n_symbols) % nm.LTE_SYMBOLS_PER_SLOT
  subframe = slot // 2 - first_slot // 2  # local subframe index
  number = (slot // 2) % 10  # subframe number within the radio frame
  first_half = slot % 2 == 0
  n_subframes = subframe[-1] + 1
  pattern = np.array(list(tdd or "D" * 10))
  special = pattern[(first_slot // 2 + np.arange(n_subframes)) % 10] == "S"
  cfi = rng.integers(1, np.where(special, 3, 4))
  allocated = rng.random((n_subframes, n_rb)) < load
  allocated[special & (special_symbols <= 3)] = False  # no PDSCH in the shortest DwPTS
  # Rows are symbols: the data allocation of each one's subframe, then what overrides it.
  mask = np.repeat(allocated[subframe], nm.SUBCARRIERS_PER_RB, axis=1)
  mask[first_half & (symbol < cfi[subframe])] = True  # control region, across the band
  j = np.arange(width)
  mask[symbol == 0] |= (j - cell_id) % 6 == 0  # CRS comb, shift v = cell id mod 6
  mask[symbol == 4] |= (j - cell_id - 3) % 6 == 0  # ... and v + 3 on symbol 4
  centre = width // 2  # DC lies between subcarriers centre - 1 and centre
  if tdd is None:
    sync = first_half & np.isin(number, (0, 5)) & np.isin(symbol, (5, 6))
  else:
    sync = (~first_half & np.isin(number, (0, 5)) & (symbol == 6)) | (
        first_half & np.isin(number, (1, 6)) & (symbol == 2))
  mask[sync, centre - 31:centre + 31] = True  # PSS / SSS: the central 62 subcarriers
  pbch = ~first_half & (number == 0) & (symbol < 4)
  mask[pbch, centre - 36:centre + 36] = True  # PBCH: the central 72
  in_subframe = (slot % 2) * nm.LTE_SYMBOLS_PER_SLOT + symbol
  mask[~nm.downlink(tdd, number, in_subframe, special_symbols)] = False
  return mask


def lte_signal(rng: np.random.Generator, n_samples: int, sample_rate: float, *,
               bandwidth_mhz: float, offset_subcarriers: int, snr_db: float, cell_id: int,
               load: float, tdd: str | None = None, special_symbols: int = 10) -> np.ndarray:
  """n_samples of LTE downlink (complex64) centred offset_subcarriers * 15 kHz from DC.

  The capture starts at a random slot of the radio frame and a random sample inside it.
  """
  n_rb = nm.LTE_BANDWIDTHS[bandwidth_mhz]
  n_fft = nm.fft_size(sample_rate, nm.LTE_SCS)
  cp = nm.half_subframe_cp(sample_rate, nm.LTE_SCS)
  slot_samples = int(cp.sum()) + len(cp) * n_fft
  n_slots = n_samples // slot_samples + 2
  first_slot = int(rng.integers(0, 20))
  mask = resource_mask(rng, n_rb, first_slot, n_slots, cell_id, load, tdd, special_symbols)
  half = mask.shape[1] // 2
  symbols = qpsk(rng, mask.shape, 10 ** (snr_db / 20))
  symbols *= mask
  grid = np.zeros((mask.shape[0], mask.shape[1] + 1), np.complex64)  # + the empty DC subcarrier
  grid[:, :half], grid[:, half + 1:] = symbols[:, :half], symbols[:, half:]
  iq = modulate(grid, offset_subcarriers - half, n_fft, cp)
  start = int(rng.integers(0, slot_samples))
  return iq[start:start + n_samples]
