"""Registry of synthetic scene models ("generators") that the data sources and builders draw from.

A generator makes one example from a numpy Generator, a target shape and a split name:

  example = generator(rng, shape, split)  # shape = (Nt, Nf, C)
  example['spectrogram']  float32 linear power of `shape`, on a unit-power noise floor
  example['label']        only for labelled generators: an int class id ('class'), or an int
                          (Nt, Nf) map of per-pixel class ids ('pixel'); ids index `classes`

`split` lets a scene model hold out whole domains (rooms, subjects, channels) from training, so that
validation/test measure generalisation and not memorisation. Generators that render IQ captures
(`capture=True`) also take the capture settings as keywords: generator(rng, shape, split,
sample_rate=..., frame_seconds=...). Generators of audio (`frontend`) say how their spectrograms
are made from sound: frontend(shape) -> msm_jax.data.audio.frontend.AudioFrontend settings (a
dict), which finetuned models keep so that launch.predict reads audio files the same way. The
registry names modules by path and imports them on first use: scene models depend on this module,
never the other way round.
"""
import dataclasses
import importlib
from typing import Callable

import numpy as np

LABEL_KINDS = ("none", "class", "pixel")
SPLITS = ("train", "validation", "test")
# A split's id enters every example's seed in the dataset builders, so splits never share one.
SPLIT_IDS = {split: index for index, split in enumerate(SPLITS)}


def shuffled_splits(count: int, seed) -> dict[str, list[int]]:
  """{split: sorted indices} of `count` (>= 3) items shuffled by np.random.default_rng(seed): a
  tenth (at least one) each to validation and test, the rest to train. The builders split the
  files they read this way, so an item's split depends only on the seed and the sorted items."""
  order = np.random.default_rng(seed).permutation(count)
  n_eval = max(1, count // 10)
  cut = {"validation": order[:n_eval], "test": order[n_eval:2 * n_eval],
         "train": order[2 * n_eval:]}
  return {split: sorted(int(i) for i in indices) for split, indices in cut.items()}

# name -> "module:attribute" of a Generator.
GENERATORS = {
    "synthetic": "msm_jax.data.synthetic:GENERATOR",
    "csi_har": "msm_jax.data.csi.simulate:GENERATOR",
    "lte_nr": "msm_jax.data.radio.generators:LTE_NR",
    "lte_nr_holdout": "msm_jax.data.radio.generators:LTE_NR_HOLDOUT",
    "radio_scene": "msm_jax.data.radio.generators:RADIO_SCENE",
    "audio_events": "msm_jax.data.audio.events:GENERATOR",
}


@dataclasses.dataclass(frozen=True)
class Generator:
  """A scene model: `example(rng, shape, split) -> dict` (see the module doc) and its labels."""
  example: Callable
  label: str = "none"  # one of LABEL_KINDS
  classes: tuple[str, ...] = ()
  capture: bool = False  # renders IQ: takes sample_rate= and frame_seconds= (see the module doc)
  frontend: Callable | None = None  # renders audio: frontend(shape) -> its settings (module doc)

  def __post_init__(self):
    if self.label not in LABEL_KINDS or (self.label != "none") != bool(self.classes):
      raise ValueError(f"Generator label={self.label!r} must be one of {LABEL_KINDS}, with class "
                       f"names exactly when labelled; got classes={self.classes!r}.")

  def __call__(self, rng: np.random.Generator, shape, split: str = "train", **capture) -> dict:
    return self.example(rng, tuple(shape), split, **capture)


def get_generator(name: str) -> Generator:
  """The registered generator `name` (config.data.generator)."""
  if name not in GENERATORS:
    raise ValueError(f"config.data.generator={name!r} is unknown; registered: "
                     f"{sorted(GENERATORS)}.")
  module, attribute = GENERATORS[name].split(":")
  return getattr(importlib.import_module(module), attribute)


def check_example(example, generator: Generator, shape, name: str) -> dict:
  """Returns `example` if it has the features `generator` promises for `shape`, else raises."""
  shape = tuple(shape)
  power = example.get("spectrogram") if isinstance(example, dict) else None
  problem = None
  if power is None or power.dtype != np.float32 or power.shape != shape:
    problem = f"'spectrogram' must be float32 {shape}"
  elif generator.label != "none":
    label = np.asarray(example.get("label", -1))
    want = () if generator.label == "class" else shape[:2]
    if label.shape != want or label.dtype.kind not in "iu" or not (
        0 <= label.min() and label.max() < len(generator.classes)):
      problem = (f"'label' must be integer class ids in [0, {len(generator.classes)}) of shape "
                 f"{want}")
  if problem:
    got = {k: (getattr(v, "dtype", type(v)), np.shape(v)) for k, v in dict(example or {}).items()}
    raise ValueError(f"Generator {name!r} returned {got}; {problem}.")
  return example
