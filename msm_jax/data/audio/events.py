"""`audio_events`: synthetic sound events, one class per clip, rendered through the log-mel front
end. A registered generator (msm_jax.data.generators), so that audio configs run offline out of
the box, and the waveforms the tests write to WAV / FLAC files.

  tone         a steady harmonic tone: fundamental 150-1500 Hz, 1-4 harmonics
  chirp        an exponential sweep of 2-4 octaves, up or down, from 100 Hz to a quarter of the rate
  noise_burst  1-4 bursts of white noise, 30-150 ms each

Tones and chirps last 30-100 % of the clip from a random onset, with 5 ms fades. The event peaks
at -30 to -6 dB full scale over white background noise 10-40 dB below that; channels hear the
same event at their own gain (within 6 dB) and independent noise. No domain is held out between
splits (split unused). Inputs are the front end's defaults for the requested (frames, n_mels,
channels): 16 kHz, 25 ms window, 10 ms hop, clips of frames x 10 ms.
"""
import dataclasses

import numpy as np

from msm_jax.data.audio.frontend import AudioFrontend, spectrogram
from msm_jax.data.generators import Generator

EVENT_CLASSES = ("tone", "chirp", "noise_burst")
FADE_SECONDS = 0.005


def _span(rng, n_samples: int, low: float, high: float) -> slice:
  """A random stretch of `low`-`high` of the clip's samples (at least one)."""
  length = max(1, round(rng.uniform(low, high) * n_samples))
  start = int(rng.integers(0, n_samples - length + 1))
  return slice(start, start + length)


def _faded(signal: np.ndarray, sample_rate: int) -> np.ndarray:
  """`signal` with raised-cosine fades in and out, so its edges add no clicks."""
  fade = min(len(signal) // 2, round(FADE_SECONDS * sample_rate))
  if fade:
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    signal[:fade] *= ramp
    signal[-fade:] *= ramp[::-1]
  return signal


def _tone(rng, seconds: np.ndarray, sample_rate: int) -> np.ndarray:
  fundamental = rng.uniform(150.0, 1500.0)
  harmonics = [h for h in range(1, int(rng.integers(1, 5)) + 1)
               if h * fundamental < 0.45 * sample_rate]
  return sum(np.sin(2 * np.pi * h * fundamental * seconds + rng.uniform(0, 2 * np.pi)) / h
             for h in harmonics)


def _chirp(rng, seconds: np.ndarray, sample_rate: int) -> np.ndarray:
  low, high = 100.0, sample_rate / 4
  span = np.log2(high / low)
  octaves = rng.uniform(min(2.0, span), min(4.0, span))
  start = low * 2 ** rng.uniform(0.0, span - octaves)
  ratio = 2.0 ** (octaves if rng.random() < 0.5 else -octaves)
  if ratio < 1:
    start /= ratio  # a downward sweep starts at the top of the same range
  duration = seconds[-1] + 1.0 / sample_rate
  # Frequency start * ratio^(t / duration): the phase is its integral.
  return np.sin(2 * np.pi * start * duration / np.log(ratio) *
                (ratio ** (seconds / duration) - 1.0))


def event(rng, name: str, n_samples: int, sample_rate: int) -> np.ndarray:
  """float64 (n_samples,) waveform of event class `name`, peak amplitude 1, silent elsewhere."""
  waveform = np.zeros(n_samples)
  if name == "noise_burst":
    for _ in range(int(rng.integers(1, 5))):
      fraction = min(1.0, rng.uniform(0.03, 0.15) * sample_rate / n_samples)
      burst = _span(rng, n_samples, fraction, fraction)
      waveform[burst] += _faded(rng.standard_normal(burst.stop - burst.start), sample_rate)
  else:
    span = _span(rng, n_samples, 0.3, 1.0)
    seconds = np.arange(span.stop - span.start) / sample_rate
    draw = _tone if name == "tone" else _chirp
    waveform[span] = _faded(draw(rng, seconds, sample_rate), sample_rate)
  return waveform / max(np.abs(waveform).max(), 1e-12)


def event_clip(rng, label: int, n_samples: int, sample_rate: int,
               channels: int = 1) -> np.ndarray:
  """float32 (channels, n_samples) of class EVENT_CLASSES[label] over background noise (module
  doc); within [-1, 1], so it can be written as PCM."""
  peak = 10 ** (rng.uniform(-30.0, -6.0) / 20)
  # Noise std: its peaks (about 3 std) sit 10-40 dB below the event's.
  noise = peak * 10 ** (-rng.uniform(10.0, 40.0) / 20) / 3
  gains = 10 ** (rng.uniform(-6.0, 0.0, (channels, 1)) / 20)
  clip = (gains * peak * event(rng, EVENT_CLASSES[label], n_samples, sample_rate)
          + noise * rng.standard_normal((channels, n_samples)))
  return np.clip(clip, -1.0, 1.0).astype(np.float32)


def _frontend(shape) -> dict:
  return dataclasses.asdict(AudioFrontend.for_shape(shape))


def _example(rng, shape, split):
  del split  # same distribution in every split (module doc)
  frontend = AudioFrontend.for_shape(shape)
  label = int(rng.integers(len(EVENT_CLASSES)))
  samples = event_clip(rng, label, frontend.clip_samples, frontend.sample_rate,
                       frontend.channels)
  return {"spectrogram": spectrogram(samples, frontend), "label": label}


GENERATOR = Generator(_example, label="class", classes=EVENT_CLASSES, frontend=_frontend)
