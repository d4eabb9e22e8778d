"""Audio front end and files: agreement with librosa, WAV / FLAC reading, resampling, channels,
clips, the bad-file errors, and the sound-event generator. Every file is written here."""
import os
import subprocess
import sys

import numpy as np
import pytest

from msm_jax.data.audio.events import EVENT_CLASSES, event_clip
from msm_jax.data.audio.files import AudioFileError, clip_count, file_spectrograms, read_clips
from msm_jax.data.audio.frontend import AudioFrontend, mel_filterbank, mel_power, spectrogram
from msm_jax.data.generators import get_generator
from msm_jax.data.normalize import log_power_db

soundfile = pytest.importorskip("soundfile")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16_000
# Largest log-mel difference to librosa allowed, in dB: float32 FFTs of two libraries differ by
# rounding only (measured: ~3e-4 dB, silence included).
LIBROSA_DB_TOLERANCE = 1e-2


def tone(seconds, frequency, rate=RATE, amplitude=0.5):
  t = np.arange(round(seconds * rate)) / rate
  return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize("settings", [
    dict(),  # the default: 16 kHz, 25 ms / 10 ms, 128 mel bins over 0-8 kHz
    dict(n_mels=40, sample_rate=22_050, fmin=60.0, fmax=7_600.0, window_seconds=0.032)])
def test_log_mel_agrees_with_librosa(settings):
  librosa = pytest.importorskip("librosa")
  frontend = AudioFrontend(frames=50, **settings)
  rate = frontend.sample_rate
  rng = np.random.default_rng(0)
  samples = np.stack([tone(0.7, 440.0, rate) + 0.01 * rng.standard_normal(round(0.7 * rate)),
                      np.concatenate([np.zeros(rate // 10), 0.3 * rng.standard_normal(
                          round(0.6 * rate))])]).astype(np.float32)  # silence, then noise
  reference = librosa.feature.melspectrogram(
      y=samples, sr=rate, n_fft=frontend.n_fft, hop_length=frontend.hop_length,
      win_length=frontend.win_length, window="hann", center=True, pad_mode="constant",
      power=2.0, n_mels=frontend.n_mels, fmin=frontend.fmin, fmax=frontend.fmax, htk=False,
      norm="slaney")  # (channels, n_mels, frames)
  ours = mel_power(samples, frontend)  # (channels, frames, n_mels)
  assert ours.dtype == np.float32 and ours.shape == np.swapaxes(reference, 1, 2).shape
  np.testing.assert_allclose(
      mel_filterbank(rate, frontend.n_fft, frontend.n_mels, frontend.fmin, frontend.fmax),
      librosa.filters.mel(sr=rate, n_fft=frontend.n_fft, n_mels=frontend.n_mels,
                          fmin=frontend.fmin, fmax=frontend.fmax), rtol=1e-5, atol=1e-9)
  reference_db = librosa.power_to_db(np.swapaxes(reference, 1, 2), ref=1.0, amin=1e-10,
                                     top_db=None)
  assert np.abs(log_power_db(ours) - reference_db).max() < LIBROSA_DB_TOLERANCE


def test_spectrogram_cuts_or_pads_frames_with_silence():
  frontend = AudioFrontend(frames=30, n_mels=16, clip_seconds=0.2)  # 21 frames of sound
  power = spectrogram(tone(0.2, 1000.0)[None], frontend)
  assert power.shape == (30, 16, 1) and power.dtype == np.float32
  assert (power[:21].sum(axis=1) > 0).all() and not power[21:].any()
  assert spectrogram(tone(1.0, 1000.0)[None], frontend).shape == (30, 16, 1)  # cut
  assert AudioFrontend(frames=64, n_mels=64).clip_seconds == 0.64  # frames x hop by default


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "FLAC"])
def test_wav_and_flac_read_as_written(tmp_path, subtype):
  samples = tone(0.5, 700.0) + tone(0.5, 3000.0, amplitude=0.2)
  path = tmp_path / ("a.flac" if subtype == "FLAC" else "a.wav")
  soundfile.write(path, samples, RATE, subtype="PCM_16" if subtype == "FLAC" else subtype)
  frontend = AudioFrontend(frames=50, n_mels=32)
  [(start, clip)] = list(read_clips(path, frontend))
  assert start == 0.0 and clip.shape == (1, 8000) and clip.dtype == np.float32
  step = {"PCM_24": 2.0 ** -23, "PCM_32": 2.0 ** -31, "FLOAT": 1e-7}.get(subtype, 2.0 ** -15)
  np.testing.assert_allclose(clip[0], samples, atol=step)


def test_channels_are_mixed_to_mono_or_kept(tmp_path):
  left, right = tone(1.0, 500.0), tone(1.0, 2500.0)
  path = tmp_path / "stereo.wav"
  soundfile.write(path, np.stack([left, right], axis=1), RATE, subtype="FLOAT")
  mono, _ = file_spectrograms(path, AudioFrontend(frames=100, n_mels=32))
  kept, _ = file_spectrograms(path, AudioFrontend(frames=100, n_mels=32, channels=2))
  frontend = AudioFrontend(frames=100, n_mels=32)
  np.testing.assert_allclose(mono[0, ..., 0], spectrogram(((left + right) / 2)[None],
                                                          frontend)[..., 0], rtol=1e-4, atol=1e-6)
  assert kept.shape == (1, 100, 32, 2)
  low, high = (kept[0, 50, :, c].argmax() for c in (0, 1))  # each channel keeps its own tone
  assert low < high
  with pytest.raises(AudioFileError, match=r"stereo\.wav: 2 channel\(s\); inputs of 3 channels"):
    file_spectrograms(path, AudioFrontend(frames=100, n_mels=32, channels=3))


def test_other_sample_rates_are_resampled(tmp_path):
  frontend = AudioFrontend(frames=100, n_mels=64)
  expected = spectrogram(tone(1.0, 1000.0)[None], frontend)
  for rate in (44_100, 8_000):
    path = tmp_path / f"{rate}.wav"
    soundfile.write(path, tone(1.0, 1000.0, rate), rate, subtype="FLOAT")
    [(_, samples)] = list(read_clips(path, frontend))
    assert samples.shape == (1, RATE)
    power = file_spectrograms(path, frontend)[0][0]
    middle = slice(10, 90)  # away from the clip's edges
    assert (power[middle].argmax(axis=1) == expected[middle].argmax(axis=1)).all()
    peak_db = log_power_db(power[middle].max(axis=1))
    assert np.abs(peak_db - log_power_db(expected[middle].max(axis=1))).max() < 0.5


def test_files_are_cut_into_clips(tmp_path):
  assert [clip_count(n, 100) for n in (1, 49, 100, 149, 150, 240, 250)] == [1, 1, 1, 1, 2, 2, 3]
  frontend = AudioFrontend(frames=100, n_mels=16)  # 1 s clips
  path = tmp_path / "long.wav"
  soundfile.write(path, np.concatenate([tone(2.0, 800.0), tone(0.5, 800.0)]), RATE)
  power, starts = file_spectrograms(path, frontend)
  assert power.shape == (3, 100, 16, 1) and list(starts) == [0.0, 1.0, 2.0]
  assert power[2, :48].all() and not power[2, 53:].any()  # the tail clip padded with silence
  soundfile.write(tmp_path / "short.wav", tone(0.3, 800.0), RATE)
  assert file_spectrograms(tmp_path / "short.wav", frontend)[0].shape == (1, 100, 16, 1)


def test_bad_files_fail_naming_the_file(tmp_path):
  frontend = AudioFrontend(frames=100, n_mels=16)
  nan = tone(1.0, 800.0)
  nan[RATE // 2] = np.nan
  soundfile.write(tmp_path / "nan.wav", nan, RATE, subtype="FLOAT")
  soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE)
  soundfile.write(tmp_path / "short.wav", tone(0.01, 800.0), RATE)
  (tmp_path / "garbage.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
  (tmp_path / "notes.txt").write_text("not sound")
  cases = {"nan.wav": r"NaN or infinite samples in 0-1 s", "empty.wav": "holds no samples",
           "short.wav": r"too short: shorter than one 25 ms analysis window",
           "garbage.wav": "not a readable audio file", "missing.wav": "missing",
           "notes.txt": r"not an audio file \(\.wav, \.flac\)"}
  for name, problem in cases.items():
    with pytest.raises(AudioFileError, match=f"{tmp_path / name}: .*{problem}"):
      file_spectrograms(tmp_path / name, frontend)


def test_front_end_settings_are_checked():
  with pytest.raises(ValueError, match="fmax"):
    AudioFrontend(frames=10, fmax=9_000.0)
  with pytest.raises(ValueError, match=r"whole Hz"):
    AudioFrontend(frames=10, sample_rate=16_000.5)
  with pytest.raises(ValueError, match=r"use fewer mel bins \(--width\)"):
    AudioFrontend(frames=10, n_mels=400)
  assert AudioFrontend(frames=10, sample_rate=22_050.0).sample_rate == 22_050  # a float flag


def test_event_generator_is_deterministic_and_labelled():
  generator = get_generator("audio_events")
  assert generator.classes == EVENT_CLASSES and generator.label == "class"
  shape = (32, 24, 2)
  examples = [generator(np.random.default_rng([1, i]), shape) for i in range(12)]
  again = generator(np.random.default_rng([1, 0]), shape)
  np.testing.assert_array_equal(again["spectrogram"], examples[0]["spectrogram"])
  assert all(e["spectrogram"].shape == shape and e["spectrogram"].dtype == np.float32
             for e in examples)
  assert {e["label"] for e in examples} == {0, 1, 2}
  assert generator.frontend(shape) == dict(
      frames=32, n_mels=24, channels=2, sample_rate=RATE, clip_seconds=0.32,
      window_seconds=0.025, hop_seconds=0.01, fmin=0.0, fmax=8000.0)
  clip = event_clip(np.random.default_rng(0), 1, 4000, RATE, channels=2)
  assert clip.shape == (2, 4000) and np.abs(clip).max() <= 1.0


def test_only_reading_audio_files_imports_soundfile():
  code = ("import sys, numpy as np\n"
          "import msm_jax.training.pretrain, msm_jax.finetune.task, msm_jax.finetune.predict\n"
          "import msm_jax.data.audio.dataset, launch.make_dataset\n"
          "from msm_jax.data.generators import get_generator\n"
          "get_generator('audio_events')(np.random.default_rng(0), (8, 8, 1))\n"
          "print('soundfile' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == "False"
