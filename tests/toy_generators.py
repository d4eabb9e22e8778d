"""Tiny labelled scene models for tests: fast, and learnable in a few steps.

A tone fills one third of the band; the class is which third, the pixel labels mark the tone
(class 1 for the low and high thirds, 2 for the middle one). Validation/test tones are 10x weaker
than training ones, a domain shift the tests can see.
"""
import numpy as np

from msm_jax.data import generators


def tone(rng, shape, split):
  label = int(rng.integers(3))
  power = np.maximum(rng.standard_exponential(shape, dtype=np.float32), np.float32(1e-6))
  band = slice(label * shape[1] // 3, (label + 1) * shape[1] // 3)
  power[:, band] *= 100.0 if split == "train" else 10.0
  pixels = np.zeros(shape[:2], np.uint8)
  pixels[:, band] = 2 if label == 1 else 1
  return {"spectrogram": power, "label": label, "pixels": pixels}


def tone_map(rng, shape, split):
  example = tone(rng, shape, split)
  return {"spectrogram": example["spectrogram"], "label": example["pixels"]}


CLASS = generators.Generator(tone, label="class", classes=("low", "mid", "high"))
PIXEL = generators.Generator(tone_map, label="pixel", classes=("noise", "side", "mid"))
NAMES = {"toy_class": f"{__name__}:CLASS", "toy_pixel": f"{__name__}:PIXEL"}


def register(monkeypatch):
  for name, path in NAMES.items():
    monkeypatch.setitem(generators.GENERATORS, name, path)
