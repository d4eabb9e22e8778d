"""The radio scene models registered in msm_jax.data.generators, and the carriers they draw.

  lte_nr          labelled (per pixel: noise / lte / nr): one LTE, one NR, or one of each, as in the
                  MathWorks LTE/NR spectrum-sensing frames the radio foundation model paper used;
                  in `interference` of the scenes also 1-2 other emitters (narrowband PSK/QAM,
                  WiFi-like bursts, radar / chirp pulses) whose pixels are labelled noise: neither
                  LTE nor NR. Every split draws the same scenes (ALL).
  lte_nr_holdout  lte_nr with carrier configurations held out of training: train and validation
                  draw SEEN (no held-out carrier), test draws HELD_OUT (only held-out carriers, in
                  LTE-only, NR-only and mixed scenes alike)
  radio_scene     unlabelled pretraining mix: 0-5 emitters of LTE, NR (carriers as in ALL),
                  narrowband PSK/QAM, WiFi-like bursts and radar / chirp pulses

A carrier (`draw_carrier`) is LTE of any bandwidth of 1.4-20 MHz, or NR at 15 or 30 kHz of any
bandwidth of the RB table with room for an SS/PBCH block (20 RBs), among those that fit the
capture (up to 50 MHz at 61.44 Msps, 100 MHz at 122.88 Msps); FDD, or in `tdd` of them TDD with a
pattern of numerology.py (LTE uplink-downlink configurations 0-6, NR slot patterns that fit the
numerology); fully loaded (every slot, every RB) in `full_load` of them, else a load uniform in
`partial_load`. Held out (`held_out`): fully loaded FDD carriers, LTE or NR, and NR carriers wider
than the widest LTE carrier (20 MHz) - carriers a model can only tell apart by what LTE and NR
are, not by load or width (a model trained on an earlier, narrower lte_nr called 50-70 % of the
pixels of fully loaded NR carriers in real captures LTE, even of a 38 MHz one). SNR, placement,
cell and channel are drawn alike in every split (scene.py).

All render one frame of IQ (by default 16 ms at 61.44 Msps; any `capture_config` through the
sample_rate / frame_seconds keywords) into any requested (Nt, Nf, C).
"""
import dataclasses
import functools

from msm_jax.data.generators import SPLITS, Generator
from msm_jax.data.radio import numerology as nm
from msm_jax.data.radio.nr import SSB_RBS
from msm_jax.data.radio.scene import (GUARD, Carrier, SceneConfig, capture_config, carrier_iq,
                                      random_other, render)

LTE_NR_CLASSES = ("noise", "lte", "nr")
_LTE_NR_MIXES = (("lte",), ("nr",), ("lte", "nr"))
WIDEST_LTE_MHZ = max(nm.LTE_BANDWIDTHS)


@dataclasses.dataclass(frozen=True)
class LteNrOptions:
  """What an lte_nr scene draws (module doc): shares of carriers and scenes, and which carriers."""
  tdd: float = 0.5  # share of TDD carriers, the pattern uniform; the rest FDD
  full_load: float = 0.3  # share of fully loaded carriers
  partial_load: tuple[float, float] = (0.1, 0.8)  # the others' load, uniform
  interference: float = 0.3  # share of scenes with 1-2 other emitters (labelled noise)
  carriers: str = "all"  # 'all', 'seen' (none `held_out`) or 'held_out' (only those)

  def __post_init__(self):
    if self.carriers not in ("all", "seen", "held_out"):
      raise ValueError(f"LteNrOptions carriers={self.carriers!r}: 'all', 'seen' or 'held_out'.")


ALL = LteNrOptions()  # lte_nr, every split
SEEN = LteNrOptions(carriers="seen")  # lte_nr_holdout train and validation
HELD_OUT = LteNrOptions(carriers="held_out")  # lte_nr_holdout test


def held_out(carrier: Carrier) -> bool:
  """Whether lte_nr_holdout keeps `carrier` out of training (module doc)."""
  return (carrier.tdd is None and carrier.load >= 1) or (
      carrier.kind == "nr" and carrier.bandwidth_mhz > WIDEST_LTE_MHZ)


@functools.lru_cache(maxsize=64)
def _bandwidths(kind: str, scs_khz: int, sample_rate: float) -> tuple:
  """Channel bandwidths (MHz) of `kind` at `scs_khz` that fit the guarded capture band."""
  table, least = (nm.LTE_BANDWIDTHS, 1) if kind == "lte" else (nm.NR_RB_TABLE[scs_khz], SSB_RBS)
  return tuple(mhz for mhz, rb in table.items() if rb >= least and nm.fits(
      rb * nm.SUBCARRIERS_PER_RB * scs_khz * 1e3, sample_rate, GUARD))


def _any_carrier(rng, kind: str, config: SceneConfig, options: LteNrOptions) -> Carrier:
  scs = 15 if kind == "lte" else int(rng.choice([15, 30]))
  bandwidths = _bandwidths(kind, scs, config.sample_rate)
  patterns = (list(nm.LTE_TDD_CONFIGS.values()) if kind == "lte" else
              [p for p in nm.NR_TDD_PATTERNS if nm.tdd_fits(p, scs)])
  bandwidth = bandwidths[int(rng.integers(len(bandwidths)))]
  tdd = patterns[int(rng.integers(len(patterns)))] if rng.random() < options.tdd else None
  load = 1.0 if rng.random() < options.full_load else rng.uniform(*options.partial_load)
  return Carrier(kind, bandwidth, scs, tdd, load)


def draw_carrier(rng, kind: str, config: SceneConfig, options: LteNrOptions = ALL) -> Carrier:
  """A `kind` ('lte' / 'nr') carrier that fits `config`'s capture, of `options` (module doc).

  'seen' and 'held_out' draw from all carriers until one is of their part: the conditional
  distribution, in a few draws (held out: ~15 % of LTE carriers, about half of NR's).
  """
  while True:
    carrier = _any_carrier(rng, kind, config, options)
    if options.carriers == "all" or held_out(carrier) == (options.carriers == "held_out"):
      return carrier


def draw_scene(rng, config: SceneConfig, options: LteNrOptions) -> tuple[list[Carrier], int]:
  """An lte_nr scene's carriers (LTE, NR or one of each) and its number of other emitters."""
  mix = _LTE_NR_MIXES[int(rng.integers(len(_LTE_NR_MIXES)))]
  carriers = [draw_carrier(rng, kind, config, options) for kind in mix]
  return carriers, (int(rng.integers(1, 3)) if rng.random() < options.interference else 0)


def _lte_nr(split_options, rng, shape, split, **capture):
  config = capture_config(**capture)
  carriers, others = draw_scene(rng, config, split_options[split])
  components = [(carrier.kind, carrier_iq(rng, carrier, config)) for carrier in carriers]
  # Other emitters are class 0, 'noise': neither LTE nor NR where they are the strongest.
  components += [(LTE_NR_CLASSES[0], random_other(rng, config)) for _ in range(others)]
  power, labels = render(rng, components, shape, config, LTE_NR_CLASSES)
  return {"spectrogram": power, "label": labels}


def _radio_scene(rng, shape, split, **capture):
  del split  # same distribution in every split
  config = capture_config(**capture)
  kinds = rng.choice(["lte", "nr", "other", "other"], int(rng.integers(0, 6)))
  components = [(kind, random_other(rng, config) if kind == "other" else
                 carrier_iq(rng, draw_carrier(rng, kind, config), config)) for kind in kinds]
  return {"spectrogram": render(rng, components, shape, config)[0]}


# The options each split of the two labelled generators draws.
LTE_NR_SPLITS = dict.fromkeys(SPLITS, ALL)
HOLDOUT_SPLITS = {"train": SEEN, "validation": SEEN, "test": HELD_OUT}
LTE_NR = Generator(functools.partial(_lte_nr, LTE_NR_SPLITS), label="pixel",
                   classes=LTE_NR_CLASSES, capture=True)
LTE_NR_HOLDOUT = Generator(functools.partial(_lte_nr, HOLDOUT_SPLITS), label="pixel",
                           classes=LTE_NR_CLASSES, capture=True)
RADIO_SCENE = Generator(_radio_scene, capture=True)
