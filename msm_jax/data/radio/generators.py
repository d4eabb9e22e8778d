"""The radio scene models registered in msm_jax.data.generators.

  lte_nr        labelled (per pixel: noise / lte / nr): one LTE, one NR, or one of each, as in the
                MathWorks LTE/NR spectrum-sensing frames the radio foundation model paper used
  radio_scene   unlabelled pretraining mix: 0-5 emitters of LTE, NR, narrowband PSK/QAM,
                WiFi-like bursts and radar / chirp pulses

Both render one frame of IQ (by default 16 ms at 61.44 Msps; any `capture_config` through the
sample_rate / frame_seconds keywords) into any requested (Nt, Nf, C). No domain is held out between
splits: every split draws from the same scene distribution (split unused).
"""
from msm_jax.data.generators import Generator
from msm_jax.data.radio.scene import capture_config, random_lte, random_nr, random_other, render

LTE_NR_CLASSES = ("noise", "lte", "nr")
_MAKERS = {"lte": random_lte, "nr": random_nr, "other": random_other}
_LTE_NR_MIXES = (("lte",), ("nr",), ("lte", "nr"))


def _lte_nr(rng, shape, split, **capture):
  del split  # same distribution in every split (module doc)
  config = capture_config(**capture)
  mix = _LTE_NR_MIXES[int(rng.integers(len(_LTE_NR_MIXES)))]
  components = [(kind, _MAKERS[kind](rng, config)) for kind in mix]
  power, labels = render(rng, components, shape, config, LTE_NR_CLASSES)
  return {"spectrogram": power, "label": labels}


def _radio_scene(rng, shape, split, **capture):
  del split
  config = capture_config(**capture)
  kinds = rng.choice(["lte", "nr", "other", "other"], int(rng.integers(0, 6)))
  components = [(kind, _MAKERS[kind](rng, config)) for kind in kinds]
  return {"spectrogram": render(rng, components, shape, config)[0]}


LTE_NR = Generator(_lte_nr, label="pixel", classes=LTE_NR_CLASSES, capture=True)
RADIO_SCENE = Generator(_radio_scene, capture=True)
