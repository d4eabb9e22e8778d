"""Audio files (WAV: PCM 16/24/32-bit or float; FLAC) cut into clips and turned into model inputs.

  power, starts = file_spectrograms('dog/0001.wav', frontend)   # (K, frames, n_mels, C), (K,) s

Files are decoded by soundfile (libsndfile), imported here only, and resampled to the front end's
rate by scipy's polyphase resampler. A file is cut into consecutive clips of clip_seconds: a tail
of at least half a clip becomes one more clip, padded with silence, as does a file shorter than a
clip; a shorter tail is dropped. Each clip is read and resampled on its own, so files of any
length take memory for one clip at a time. With 1 channel in the front end, every file is mixed
to mono; with C > 1, a file must have exactly C channels. Every problem (missing, unreadable,
empty, shorter than one analysis window, NaN or infinite samples, wrong channel count) raises an
AudioFileError naming the file.
"""
import math
import os

import numpy as np
import scipy.signal

from msm_jax.data.audio.frontend import AudioFrontend, spectrogram

AUDIO_EXTENSIONS = (".wav", ".flac")


class AudioFileError(ValueError):
  """An audio file that cannot give model inputs; the message names the file."""

  def __init__(self, path: str, problem: str):
    super().__init__(f"{path}: {problem}")


def is_audio_file(path: str) -> bool:
  return os.fspath(path).lower().endswith(AUDIO_EXTENSIONS)


def clip_count(samples: int, clip_samples: int) -> int:
  """Clips of a file of `samples` (module doc: a tail of half a clip or more counts)."""
  return max(1, math.floor(samples / clip_samples + 0.5))


def _soundfile():
  """The soundfile module, imported here only: nothing but the audio path needs libsndfile."""
  try:
    import soundfile
  except ImportError:
    raise ImportError("reading audio files needs soundfile (which bundles libsndfile): "
                      "pip install soundfile") from None
  return soundfile


def _open(path: str):
  soundfile = _soundfile()
  if not os.path.isfile(path):
    raise AudioFileError(path, "missing.")
  if not is_audio_file(path):
    raise AudioFileError(path, f"not an audio file ({', '.join(AUDIO_EXTENSIONS)}).")
  try:
    return soundfile.SoundFile(path)
  except (soundfile.SoundFileError, RuntimeError, OSError) as error:
    raise AudioFileError(path, f"not a readable audio file ({error}).") from None


def _read(audio, path: str, start: int, count: int) -> np.ndarray:
  """float32 (channels, <= count) samples from `start`, decoding errors naming the file."""
  soundfile = _soundfile()
  try:
    audio.seek(start)
    return audio.read(count, dtype="float32", always_2d=True).T
  except (soundfile.SoundFileError, RuntimeError) as error:
    raise AudioFileError(path, f"cannot be decoded from {start / audio.samplerate:g} s "
                               f"({error}).") from None


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
  if rate == target:
    return samples
  divisor = math.gcd(rate, target)
  return scipy.signal.resample_poly(samples, target // divisor, rate // divisor,
                                    axis=-1).astype(np.float32)


def read_clips(path: str, frontend: AudioFrontend):
  """Yields (start in seconds, float32 samples (C, clip_samples)) of each clip of the file, at
  the front end's sample rate (module doc)."""
  path = os.fspath(path)
  with _open(path) as audio:
    rate, channels, length = audio.samplerate, audio.channels, audio.frames
    if length <= 0:
      raise AudioFileError(path, "holds no samples (empty).")
    if length / rate < frontend.window_seconds:
      window_ms = frontend.window_seconds * 1e3
      raise AudioFileError(path, f"{length} samples ({length / rate * 1e3:.3g} ms at {rate} Hz) "
                                 f"is too short: shorter than one {window_ms:g} ms analysis "
                                 "window.")
    if frontend.channels > 1 and channels != frontend.channels:
      raise AudioFileError(path, f"{channels} channel(s); inputs of {frontend.channels} channels "
                                 "need files of that many (1 channel mixes any file to mono).")
    clip = round(frontend.clip_seconds * rate)  # in the file's samples
    for index in range(clip_count(length, clip)):
      block = _read(audio, path, index * clip, clip)
      if not np.isfinite(block).all():
        raise AudioFileError(path, f"NaN or infinite samples in {index * clip / rate:g}-"
                                   f"{(index + 1) * clip / rate:g} s.")
      if frontend.channels == 1:
        block = block.mean(axis=0, keepdims=True)
      block = _resample(block, rate, frontend.sample_rate)[:, :frontend.clip_samples]
      missing = frontend.clip_samples - block.shape[1]
      yield index * clip / rate, np.pad(block, [(0, 0), (0, missing)])


def file_spectrograms(path: str, frontend: AudioFrontend) -> tuple[np.ndarray, np.ndarray]:
  """(float32 mel power (K, frames, n_mels, C), float64 clip starts in seconds (K,)) of every
  clip of an audio file."""
  starts, powers = [], []
  for start, samples in read_clips(path, frontend):
    starts.append(start)
    powers.append(spectrogram(samples, frontend))
  return np.stack(powers), np.asarray(starts)
