"""The audio dataset (a folder of WAV / FLAC files -> tfds), and the audio path end to end:
make_dataset, pretraining, finetuning above chance, launch.predict. Every file is written here."""
import collections
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from msm_jax.data.audio.events import EVENT_CLASSES, event_clip
from msm_jax.data.audio.files import AudioFileError, file_spectrograms
from msm_jax.data.audio.frontend import AudioFrontend
from msm_jax.data.normalize import STATS_FILENAME, compute_stats, read_stats

soundfile = pytest.importorskip("soundfile")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16_000
SMALL = AudioFrontend(frames=32, n_mels=32)  # 0.32 s clips


def write_events(folder, files_per_class, clips_per_file, clip_seconds, rate=RATE, seed=0,
                 labelled=True) -> list:
  """FOLDER/<class>/<i>.wav|.flac (or FOLDER/<class>_<i>.* when not `labelled`): each file
  `clips_per_file` clips long, each clip one event of its class; returns the paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for label, name in enumerate(EVENT_CLASSES):
    for i in range(files_per_class):
      samples = np.concatenate([event_clip(rng, label, round(clip_seconds * rate), rate)[0]
                                for _ in range(clips_per_file)])
      stem = os.path.join(folder, name, f"{i:02d}") if labelled else os.path.join(
          folder, f"{name}_{i:02d}")
      path = stem + (".flac" if i % 2 else ".wav")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      soundfile.write(path, samples, rate, subtype="PCM_16")
      paths.append(path)
  return paths


def read_split(version_dir, split):
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  builder = tfds.builder_from_directory(version_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))), builder.info


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  """(audio folder, data_dir, version directory): 3 classes of 4 files of 2 clips at 22.05 kHz,
  built at SMALL."""
  from msm_jax.data.audio import dataset
  root = tmp_path_factory.mktemp("small")
  write_events(root / "sounds", files_per_class=4, clips_per_file=2, clip_seconds=0.32,
               rate=22_050)
  version_dir, skipped = dataset.build(str(root / "data"), audio_dir=str(root / "sounds"),
                                       shape=SMALL.shape)
  assert skipped == []
  return root / "sounds", str(root / "data"), version_dir


@pytest.fixture(scope="module")
def pretrained(small, tmp_path_factory):
  """A tiny MSM run of 4 steps on the small audio dataset (the program tests/test_finetune.py
  compiles too, so a full run compiles it once)."""
  from configs.pretrain import get_config as pretrain_config
  from msm_jax.training.pretrain import pretrain
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  config = pretrain_config("tiny")
  config.data.update(source="tfds", name="audio", data_dir=small[1], shuffle_buffer=16)
  config.update(input_shape=SMALL.shape, batch_size=8, total_steps=4, warmup_steps=1,
                log_every=2, checkpoint_every=4, figure_every=0)
  pretrain(config, workdir)
  return workdir


def test_labelled_folder_builds_clips_split_by_file(small):
  from msm_jax.data.audio import dataset
  from msm_jax.data.tfds_pipeline import TfdsSource
  audio_dir, data_dir, version_dir = small
  shape = SMALL.shape
  assert version_dir == os.path.join(data_dir, "audio", "1.0.0")
  splits = {split: read_split(version_dir, split)[0] for split in ("train", "validation", "test")}
  info = read_split(version_dir, "train")[1]
  assert info.features["label"].names == sorted(EVENT_CLASSES)
  assert {split: len(examples) for split, examples in splits.items()} == {
      "train": 12, "validation": 6, "test": 6}  # per class: 2 / 1 / 1 files of 2 clips
  files = {split: {e["source"].decode() for e in examples} for split, examples in splits.items()}
  assert not (files["train"] & files["validation"] or files["train"] & files["test"] or
              files["validation"] & files["test"])  # a file's clips never straddle splits
  for examples in splits.values():
    per_class = len(examples) // 3
    assert collections.Counter(e["label"] for e in examples) == {0: per_class, 1: per_class,
                                                                 2: per_class}
    for e in examples:  # the class is the folder; each clip is its file's clip at start_seconds
      source = e["source"].decode()
      assert sorted(EVENT_CLASSES).index(source.split("/")[0]) == e["label"]
      power, starts = file_spectrograms(audio_dir / source, SMALL)
      clip = list(starts.astype(np.float32)).index(e["start_seconds"])
      np.testing.assert_array_equal(e["spectrogram"], power[clip])
  stats = read_stats(os.path.join(version_dir, STATS_FILENAME))
  exact = compute_stats(e["spectrogram"] for e in splits["train"])
  assert stats["mean"] == pytest.approx(exact["mean"], rel=1e-9) and stats["num_examples"] == 12

  source = TfdsSource(name="audio", data_dir=data_dir, split="test", input_shape=shape, seed=0,
                      shuffle_buffer=4, prefetch=1)
  assert source.classes == tuple(sorted(EVENT_CLASSES))
  assert source.frontend == dataclasses.asdict(SMALL)  # 22.05 kHz files resampled to 16 kHz
  batch = next(source.epoch(6))
  assert batch["image"].shape == (6,) + shape and sorted(batch["label"]) == [0, 0, 1, 1, 2, 2]

  params = dataset.build_params(audio_dir=str(audio_dir), shape=shape)
  assert params == dataset.build_params(audio_dir=str(audio_dir), shape=shape)  # deterministic
  assert params["files"] != dataset.build_params(audio_dir=str(audio_dir), shape=shape,
                                                 seed=1)["files"]
  with pytest.raises(ValueError, match="already holds audio"):
    dataset.build(data_dir, audio_dir=str(audio_dir), shape=shape, clip_seconds=0.3)


def test_pretraining_on_audio_checks_the_input_shape(small, pretrained):
  from configs.pretrain import get_config as pretrain_config
  from msm_jax.checkpoint.manager import restore_encoder
  from msm_jax.data import make_source
  assert restore_encoder(pretrained)[1]["input_shape"] == list(SMALL.shape)
  config = pretrain_config("maskspec_tiny")  # the audio dataset's default shape, not SMALL's
  config.data.update(source="tfds", data_dir=small[1])
  with pytest.raises(ValueError, match=r"config\.input_shape=\(1024, 128, 1\) does not match "
                                       r"the spectrogram shape \(32, 32, 1\)"):
    make_source(config.data, config.input_shape, 0)


def test_unlabelled_folder_bad_files_and_skip_bad(tmp_path):
  from msm_jax.data.audio import dataset
  from msm_jax.data.tfds_pipeline import TfdsSource
  audio_dir = tmp_path / "flat"
  write_events(audio_dir, files_per_class=7, clips_per_file=1, clip_seconds=0.32,
               labelled=False)
  (audio_dir / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
  with pytest.raises(AudioFileError, match=r"broken\.wav: not a readable audio file"):
    dataset.build(str(tmp_path / "strict"), audio_dir=str(audio_dir), shape=SMALL.shape)
  version_dir, skipped = dataset.build(str(tmp_path / "data"), audio_dir=str(audio_dir),
                                       shape=SMALL.shape, skip_bad=True)
  assert len(skipped) == 1 and "broken.wav" in skipped[0]
  examples, info = read_split(version_dir, "train")
  assert "label" not in info.features
  assert sum(len(read_split(version_dir, split)[0]) for split in ("train", "validation",
                                                                  "test")) == 21
  source = TfdsSource(name="audio", data_dir=str(tmp_path / "data"), split="train",
                      input_shape=SMALL.shape, seed=0, shuffle_buffer=4, prefetch=1)
  assert source.classes == ()

  write_events(tmp_path / "few", files_per_class=2, clips_per_file=1, clip_seconds=0.32)
  with pytest.raises(ValueError, match=r"class 'chirp' has 2 audio file\(s\); at least 3"):
    dataset.build_params(audio_dir=str(tmp_path / "few"), shape=SMALL.shape)
  os.makedirs(tmp_path / "empty")
  with pytest.raises(ValueError, match=r"holds no \.wav or \.flac file"):
    dataset.build_params(audio_dir=str(tmp_path / "empty"), shape=SMALL.shape)


def test_make_dataset_finetune_and_predict(pretrained, tmp_path):
  """The README's audio commands on 3 classes of synthetic sound events: the tiny model,
  finetuned from an audio pretraining, classifies held-out files' clips well above chance (1/3)."""
  from configs.finetune import get_config as finetune_config
  from msm_jax.finetune.task import finetune
  audio_dir, data_dir = tmp_path / "sounds", str(tmp_path / "data")
  paths = write_events(audio_dir, files_per_class=20, clips_per_file=4, clip_seconds=0.64)
  result = subprocess.run(
      [sys.executable, "-m", "launch.make_dataset", "--dataset=audio", f"--data_dir={data_dir}",
       f"--audio_dir={audio_dir}", "--height=64", "--width=64", "--clip_seconds=0.64"],
      cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"Built audio in {data_dir}/audio/1.0.0" in result.stdout
  assert "Classes (the sub-folders of --audio_dir): chirp, noise_burst, tone" in result.stdout

  config = finetune_config("audio_tiny")  # (64, 64, 1); pretrained at (32, 32, 1)
  config.data.update(source="tfds", data_dir=data_dir)
  config.update(init_from=pretrained, mode="full", batch_size=16,
                total_steps=100, base_lr=0.05, log_every=50, checkpoint_every=100)
  workdir = tmp_path / "finetune"
  _, metrics = finetune(config, str(workdir))
  assert metrics["num_examples"] == 24  # test: 2 files of 4 clips per class
  assert metrics["accuracy"] > 0.6, metrics
  assert set(metrics["per_class_accuracy"]) == set(EVENT_CLASSES)
  assert os.path.exists(workdir / "figures" / "confusion_test.png")

  chirp = next(p for p in paths if "/chirp/" in p)
  result = subprocess.run(
      [sys.executable, "-m", "launch.predict", f"--workdir={workdir}", f"--input={chirp}",
       f"--output={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  predicted = json.load(open(tmp_path / "out.json"))
  assert predicted["classes"] == sorted(EVENT_CLASSES)
  assert [item["start_s"] for item in predicted["items"]] == [0.0, 0.64, 1.28, 1.92]
  probabilities = np.load(tmp_path / "out.npy")
  assert probabilities.shape == (4, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_make_dataset_needs_the_audio_folder(tmp_path):
  result = subprocess.run([sys.executable, "-m", "launch.make_dataset", "--dataset=audio",
                           f"--data_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0
  assert "--dataset=audio reads --audio_dir=FOLDER" in result.stderr, result.stderr[-1000:]


def test_audio_files_need_an_audio_model(tmp_path):
  from configs.finetune import get_config as finetune_config
  from msm_jax.finetune.predict import Finetuned, recording_inputs
  from msm_jax.finetune.task import FinetuneTask
  config = finetune_config("har_tiny")
  model = Finetuned(config, FinetuneTask(config, ("a", "b"), {"mean": 0.0, "std": 1.0}), {})
  with pytest.raises(ValueError, match=r"x\.wav: an audio file, but this model was finetuned "
                                       r"on classification of radio or CSI"):
    recording_inputs(model, str(tmp_path / "x.wav"))
