"""Data pipelines: synthetic source, shared normalisation, radio_pretrain builder, tf.data source."""
import gc
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs.pretrain import get_config
from msm_jax.data import make_source
from msm_jax.data.normalize import (EPS, STATS_FILENAME, compute_stats, log_power_db, read_stats,
                                    standardize, write_stats)
from msm_jax.data import generators
from msm_jax.data.synthetic import SyntheticSource, prefetched, synthetic_power_spectrogram

SHAPE = (32, 32, 1)
SEED = 3
NUM_TRAIN = 40
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def data_config(**overrides):
  config = get_config("tiny").data  # the real config block, so new fields are exercised
  config.update(dict(shuffle_buffer=100, prefetch=2), **overrides)
  return config


def take(iterator, n):
  batches = [next(iterator)["image"] for _ in range(n)]
  iterator.close()
  return batches


# ---------------------------------------------------------------- imports

def test_data_modules_import_without_tensorflow():
  code = ("import sys, msm_jax.data, msm_jax.data.source, msm_jax.data.synthetic, "
          "msm_jax.data.normalize, msm_jax.data.tfds_pipeline, msm_jax.data.radio_pretrain\n"
          "import ml_collections\n"
          "c = ml_collections.ConfigDict(dict(source='synthetic', generator='synthetic', "
          "split='train', prefetch=0))\n"
          "next(msm_jax.data.make_source(c, (8, 8, 1), 0).batches(global_batch_size=2, start_step=0))\n"
          "print(sorted(m for m in sys.modules if m.startswith('tensorflow')))")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- synthetic generator

@pytest.mark.parametrize("shape", [(32, 32, 1), (17, 40, 3), (1, 1, 1)])
def test_generator_shape_dtype_and_determinism(shape):
  a = synthetic_power_spectrogram(np.random.default_rng([0, 5]), shape)
  b = synthetic_power_spectrogram(np.random.default_rng([0, 5]), shape)
  c = synthetic_power_spectrogram(np.random.default_rng([0, 6]), shape)
  assert a.shape == shape and a.dtype == np.float32
  assert np.all(np.isfinite(a)) and np.all(a > 0)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_generator_noise_floor_and_signals():
  powers = np.stack([synthetic_power_spectrogram(np.random.default_rng([9, i]), (32, 32, 1))
                     for i in range(32)])
  # The lower tail is unit-power exponential noise (its 5 % quantile is 0.051) ...
  assert 0.03 < np.quantile(powers, 0.05) < 0.15
  # ... while emitters at 0-25 dB SNR lift many pixels far above it.
  assert np.mean(powers > 30.0) > 0.02


def test_generator_channels_share_the_scene():
  powers = np.stack([synthetic_power_spectrogram(np.random.default_rng([9, i]), (32, 32, 2))
                     for i in range(16)])
  db = 10 * np.log10(powers)
  same = np.mean([np.corrcoef(db[i, ..., 0].ravel(), db[i, ..., 1].ravel())[0, 1]
                  for i in range(16)])
  other = np.mean([np.corrcoef(db[i, ..., 0].ravel(), db[(i + 1) % 16, ..., 1].ravel())[0, 1]
                   for i in range(16)])
  assert same > other + 0.2
  assert not np.array_equal(powers[..., 0], powers[..., 1])  # independent noise per channel


# ---------------------------------------------------------------- synthetic source

def test_synthetic_source_shapes_resume_and_seed():
  stream = take(make_source(data_config(), SHAPE, SEED).batches(global_batch_size=8, start_step=0), 5)
  assert all(b.shape == (8,) + SHAPE and b.dtype == np.float32 for b in stream)
  resumed = take(make_source(data_config(), SHAPE, SEED).batches(global_batch_size=8, start_step=3), 2)
  np.testing.assert_array_equal(resumed[0], stream[3])
  np.testing.assert_array_equal(resumed[1], stream[4])
  other_seed = take(make_source(data_config(), SHAPE, SEED + 1).batches(
      global_batch_size=8, start_step=0), 1)
  assert not np.allclose(other_seed[0], stream[0])


def test_worker_processes_generate_the_same_stream(toy_generators):
  """config.data.workers > 0 spawns generator processes: same batches as the prefetch thread;
  generators registered at run time (the toy ones, labels included) reach them, and a worker's
  error reaches the consumer with the generator named."""
  for generator in ("synthetic", "toy_class"):
    inline = make_source(data_config(generator=generator, workers=0), SHAPE, SEED)
    spawned = make_source(data_config(generator=generator, workers=2), SHAPE, SEED)
    for source in (inline, spawned):
      source.stream = source.batches(global_batch_size=6, start_step=2)
    for _ in range(2):
      want, got = next(inline.stream), next(spawned.stream)
      assert sorted(got) == sorted(want)
      for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    spawned.stream.close()
    assert spawned._processes is not None  # the batches did come from worker processes
  broken = make_source(data_config(generator="toy_class", workers=2), SHAPE, SEED)
  broken._generator_name = "toy_broken"  # the statistics were made, the stream is broken
  with pytest.raises(ValueError, match="Generator 'toy_broken' returned"):
    next(broken.batches(global_batch_size=6, start_step=0))


def test_workers_auto_and_errors(monkeypatch):
  from msm_jax.data.source import generator_workers
  assert generator_workers(-1) == 0  # JAX on CPU here: generate in the prefetch thread
  assert generator_workers(3) == 3
  import jax
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  for cores, expected in [(16, 15), (1, 1), (240, 32)]:  # one core left to the training loop
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert generator_workers(-1) == expected
  with pytest.raises(ValueError, match=r"config\.data\.workers=-2"):
    generator_workers(-2)
  with pytest.raises(ValueError, match=r"config\.data\.workers"):
    make_source(data_config(workers=-5), SHAPE, SEED)


@pytest.mark.parametrize("process_count", [2, 4])
def test_synthetic_process_slices_concatenate_to_global_batch(process_count):
  source = SyntheticSource(SHAPE, seed=SEED, prefetch=0)
  whole = take(source.batches(global_batch_size=8, start_step=2), 2)
  parts = [take(source.batches(global_batch_size=8, start_step=2, process_index=p,
                               process_count=process_count), 2) for p in range(process_count)]
  for step in range(2):
    assert parts[0][step].shape == (8 // process_count,) + SHAPE
    np.testing.assert_array_equal(np.concatenate([p[step] for p in parts]), whole[step])


def test_synthetic_source_is_standardised():
  source = SyntheticSource(SHAPE, seed=SEED, prefetch=2)
  # Steps past the 64 examples the statistics came from: held-out data.
  images = np.stack(take(source.batches(global_batch_size=32, start_step=10), 4))
  assert abs(images.mean()) < 0.15
  assert 0.85 < images.std() < 1.15
  powers = np.stack([source.power(10 * 32 + i) for i in range(32)])
  np.testing.assert_allclose(images[0], standardize(powers, **source.stats), rtol=1e-6)


def test_batch_size_must_split_across_processes():
  source = SyntheticSource(SHAPE, seed=SEED, prefetch=0)
  with pytest.raises(ValueError, match="global_batch_size=10"):
    source.batches(global_batch_size=10, start_step=0, process_index=0, process_count=4)


def test_prefetch_thread_stops_on_close_and_on_drop():
  iterator = SyntheticSource(SHAPE, seed=SEED, prefetch=2).batches(global_batch_size=4, start_step=0)
  next(iterator)
  thread = iterator.thread
  iterator.close()
  thread.join(timeout=5)
  assert not thread.is_alive()
  with pytest.raises(StopIteration):
    next(iterator)

  iterator = SyntheticSource(SHAPE, seed=SEED, prefetch=2).batches(global_batch_size=4, start_step=0)
  thread = iterator.thread
  del iterator  # never iterated, just dropped
  gc.collect()
  thread.join(timeout=5)
  assert not thread.is_alive()


def test_prefetch_reraises_producer_errors_and_ends_with_its_keys():
  def make_item(key):
    if key == 2:
      raise KeyError("broken example 2")
    return key

  iterator = prefetched(make_item, iter(range(5)), depth=2)
  assert [next(iterator), next(iterator)] == [0, 1]
  with pytest.raises(KeyError, match="broken example 2"):
    next(iterator)
  assert list(prefetched(str, iter(range(5)), depth=2)) == ["0", "1", "2", "3", "4"]  # finite keys end


def test_unknown_source_is_named_in_the_error():
  with pytest.raises(ValueError, match=r"config\.data\.source='nope'"):
    make_source(data_config(source="nope"), SHAPE, SEED)


def test_bad_input_shape_is_named_in_the_error():
  with pytest.raises(ValueError, match=r"config\.input_shape"):
    make_source(data_config(), (32, 32), SEED)


# ---------------------------------------------------------------- normalisation

def test_compute_stats_is_exact_over_all_values():
  rng = np.random.default_rng(0)
  powers = [rng.exponential(size=(n, 7)).astype(np.float32) * 10 ** k for k, n in enumerate([3, 50, 1])]
  stats = compute_stats(iter(powers))
  db = np.concatenate([log_power_db(p.astype(np.float64)).ravel() for p in powers])
  assert stats["mean"] == pytest.approx(db.mean(), rel=1e-12)
  assert stats["std"] == pytest.approx(db.std(), rel=1e-12)
  with pytest.raises(ValueError, match="no power values"):
    compute_stats([])


def test_stats_file_round_trip_and_errors(tmp_path):
  path = str(tmp_path / STATS_FILENAME)
  write_stats(path, {"mean": 1.5, "std": 2.0, "split": "train"})
  assert read_stats(path) == {"mean": 1.5, "std": 2.0, "split": "train"}
  with pytest.raises(FileNotFoundError, match="missing.json"):
    read_stats(str(tmp_path / "missing.json"))
  (tmp_path / "bad.json").write_text('{"mean": 1.0}')
  with pytest.raises(ValueError, match="'std'"):
    read_stats(str(tmp_path / "bad.json"))


def test_numpy_and_tensorflow_normalisation_agree():
  from msm_jax.data.tfds_pipeline import import_tf
  tf, _ = import_tf()
  assert not tf.config.get_visible_devices("GPU")  # TensorFlow never takes the accelerator
  rng = np.random.default_rng(1)
  power = (rng.exponential(size=(4, 16, 16, 2)) * 10 ** rng.uniform(-3, 4, (4, 1, 1, 1)))
  power = power.astype(np.float32)
  power[0, 0, 0, 0] = 0.0  # the EPS floor
  expected = standardize(power, 2.5, 7.5)
  got = standardize(tf.constant(power), 2.5, 7.5, log=tf.math.log).numpy()
  assert expected.dtype == got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert expected[0, 0, 0, 0] == pytest.approx((10 * np.log10(EPS) - 2.5) / 7.5, rel=1e-5)


# ---------------------------------------------------------------- labelled generators


def _toy_example(rng, shape, split):
  """Class = which third of the band holds a tone; pixel labels mark the tone."""
  label = int(rng.integers(3))
  power = np.ones(shape, np.float32) * rng.uniform(0.5, 2.0)
  band = slice(label * shape[1] // 3, (label + 1) * shape[1] // 3)
  power[:, band] += 100.0 if split == "train" else 10.0
  pixels = np.zeros(shape[:2], np.uint8)
  pixels[:, band] = 1
  return {"spectrogram": power, "label": label, "pixels": pixels}


TOY_CLASS = generators.Generator(_toy_example, label="class", classes=("low", "mid", "high"))
TOY_PIXEL = generators.Generator(
    lambda rng, shape, split: {"spectrogram": _toy_example(rng, shape, split)["spectrogram"],
                               "label": _toy_example(rng, shape, split)["pixels"]},
    label="pixel", classes=("noise", "tone"))


@pytest.fixture
def toy_generators(monkeypatch):
  monkeypatch.setitem(generators.GENERATORS, "toy_class", f"{__name__}:TOY_CLASS")
  monkeypatch.setitem(generators.GENERATORS, "toy_pixel", f"{__name__}:TOY_PIXEL")
  monkeypatch.setitem(generators.GENERATORS, "toy_broken", f"{__name__}:TOY_BROKEN")


TOY_BROKEN = generators.Generator(lambda rng, shape, split: {"spectrogram": np.ones(shape)},
                                  label="class", classes=("a",))


def test_labelled_sources_carry_labels_and_splits_differ(toy_generators):
  source = make_source(data_config(generator="toy_class"), SHAPE, SEED)
  assert source.classes == ("low", "mid", "high")
  batch = next(source.batches(global_batch_size=6, start_step=0))
  assert batch["label"].dtype == np.int32 and batch["label"].shape == (6,)
  for image, label in zip(batch["image"], batch["label"]):  # the label names the loud third
    assert np.argmax(image.mean(axis=(0, 2))[:30].reshape(3, -1).mean(axis=1)) == label
  pixel = make_source(data_config(generator="toy_pixel"), SHAPE, SEED)
  labels = next(pixel.batches(global_batch_size=2, start_step=0))["label"]
  assert labels.shape == (2,) + SHAPE[:2] and labels.dtype == np.int32
  validation = make_source(data_config(generator="toy_class"), SHAPE, SEED, split="validation")
  assert validation.stats == source.stats  # standardised with the train split's statistics
  epoch = list(validation.epoch(4, num_examples=10))
  assert [len(b["label"]) for b in epoch] == [4, 4, 2]
  again = np.concatenate([b["image"] for b in validation.epoch(3, num_examples=10)])
  np.testing.assert_array_equal(np.concatenate([b["image"] for b in epoch]), again)
  assert not np.isin(again, np.concatenate(
      [b["image"] for b in source.epoch(5, num_examples=10)])).all()
  with pytest.raises(ValueError, match="eval_examples"):
    source.epoch(4)


def test_bad_generators_are_named(toy_generators):
  with pytest.raises(ValueError, match=r"config\.data\.generator='nope'"):
    make_source(data_config(generator="nope"), SHAPE, SEED)
  with pytest.raises(ValueError, match=r"'toy_broken'.*float32"):
    make_source(data_config(generator="toy_broken"), SHAPE, SEED)
  with pytest.raises(ValueError, match="class names exactly when labelled"):
    generators.Generator(_toy_example, label="class")
  with pytest.raises(ValueError, match=r"config\.data\.split='dev'"):
    make_source(data_config(), SHAPE, SEED, split="dev")


# ---------------------------------------------------------------- radio_pretrain + TfdsSource

@pytest.fixture(scope="module")
def built(tmp_path_factory):
  from msm_jax.data import radio_pretrain
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  version_dir = radio_pretrain.build(data_dir, num_examples=NUM_TRAIN, shape=SHAPE, seed=SEED)
  return data_dir, version_dir


def regenerated(split_id, count):
  return np.stack([synthetic_power_spectrogram(np.random.default_rng([SEED, split_id, i]), SHAPE)
                   for i in range(count)])


def example_indices(images, stats, train_powers):
  """Which train example each standardised image is (asserting it is one)."""
  reference = standardize(train_powers, stats["mean"], stats["std"])
  distance = np.abs(images[:, None] - reference[None]).reshape(len(images), len(reference), -1)
  distance = distance.max(axis=-1)
  assert np.all(distance.min(axis=1) < 1e-4), "an image is not a standardised train example"
  return distance.argmin(axis=1)


def test_radio_pretrain_is_deterministic_with_train_stats(built):
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  data_dir, version_dir = built
  assert version_dir == os.path.join(data_dir, "radio_pretrain", "1.0.0")
  builder = tfds.builder_from_directory(version_dir)
  sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
  assert sizes == {"train": NUM_TRAIN, "validation": 4, "test": 4}
  for split_id, split in enumerate(["train", "validation", "test"]):
    stored = np.stack([e["spectrogram"] for e in tfds.as_numpy(builder.as_dataset(split=split))])
    expected = regenerated(split_id, sizes[split])
    order = lambda a: a[np.argsort(a.reshape(len(a), -1)[:, 0])]  # file order is tfds's
    np.testing.assert_array_equal(order(stored), order(expected))
  stats = read_stats(os.path.join(version_dir, STATS_FILENAME))
  exact = compute_stats(regenerated(0, NUM_TRAIN))
  assert stats["mean"] == pytest.approx(exact["mean"], rel=1e-9)
  assert stats["std"] == pytest.approx(exact["std"], rel=1e-9)


def test_radio_pretrain_refuses_other_params_in_same_dir(built):
  from msm_jax.data import radio_pretrain
  with pytest.raises(ValueError, match="already holds radio_pretrain"):
    radio_pretrain.build(built[0], num_examples=NUM_TRAIN, shape=(32, 32, 2), seed=SEED)


def test_tfds_source_shapes_and_resume(built):
  config = data_config(source="tfds", data_dir=built[0])
  # 40 train examples / local batch 8 = 5 steps per epoch: the resume crosses an epoch boundary.
  stream = take(make_source(config, SHAPE, SEED).batches(global_batch_size=8, start_step=0), 8)
  assert all(b.shape == (8,) + SHAPE and b.dtype == np.float32 for b in stream)
  source = make_source(config, SHAPE, SEED)
  resumed = take(source.batches(global_batch_size=8, start_step=6), 2)
  np.testing.assert_array_equal(resumed[0], stream[6])
  np.testing.assert_array_equal(resumed[1], stream[7])
  first_epoch = example_indices(np.concatenate(stream[:5]), source.stats, regenerated(0, NUM_TRAIN))
  assert sorted(first_epoch) == list(range(NUM_TRAIN))  # each example once per epoch
  assert list(first_epoch) != list(range(NUM_TRAIN))  # ... in shuffled order
  images = np.concatenate(stream[:5])
  assert abs(images.mean()) < 1e-3 and images.std() == pytest.approx(1.0, abs=1e-3)


def test_tfds_split_slices_limit_the_training_examples(built):
  config = data_config(source="tfds", data_dir=built[0], split="train[:8]")
  source = make_source(config, SHAPE, SEED)
  images = np.concatenate(take(source.batches(global_batch_size=4, start_step=0), 4))
  seen = example_indices(images, source.stats, regenerated(0, NUM_TRAIN))
  assert len(set(seen)) == 8 and sorted(seen) == sorted(list(set(seen)) * 2)  # 2 epochs of 8
  with pytest.raises(ValueError, match=r"config\.data\.split='dev\[:8\]'.*train\[:64\]"):
    make_source(data_config(source="tfds", data_dir=built[0], split="dev[:8]"), SHAPE, SEED)


def test_tfds_source_two_processes_are_disjoint(built):
  source = make_source(data_config(source="tfds", data_dir=built[0]), SHAPE, SEED)
  train = regenerated(0, NUM_TRAIN)
  seen = []
  for process in range(2):
    batches = take(source.batches(global_batch_size=8, start_step=0, process_index=process,
                                  process_count=2), 5)
    assert batches[0].shape == (4,) + SHAPE
    seen.append(set(example_indices(np.concatenate(batches), source.stats, train)))
  assert len(seen[0]) == len(seen[1]) == NUM_TRAIN // 2  # one epoch of each half
  assert not seen[0] & seen[1]


def test_tfds_errors_name_the_config_field(built, tmp_path):
  unbuilt = data_config(source="tfds", data_dir=str(tmp_path / "empty"))
  with pytest.raises(ValueError, match=r"config\.data\.name='radio_pretrain'.*config\.data\.data_dir"
                     r".*launch\.make_dataset") as error:
    make_source(unbuilt, SHAPE, SEED)
  assert isinstance(error.value, FileNotFoundError)
  with pytest.raises(ValueError, match=r"config\.data\.data_dir is empty"):
    make_source(data_config(source="tfds"), SHAPE, SEED)

  config = data_config(source="tfds", data_dir=built[0])
  with pytest.raises(ValueError, match=r"config\.input_shape=\(32, 32, 2\).*\(32, 32, 1\)"):
    make_source(config, (32, 32, 2), SEED)
  with pytest.raises(ValueError, match=r"config\.input_shape=\(64, 64, 1\)"):
    make_source(config, (64, 64, 1), SEED)
  with pytest.raises(ValueError, match=r"config\.data\.split='training'"):
    make_source(data_config(source="tfds", data_dir=built[0], split="training"), SHAPE, SEED)

  copy = tmp_path / "copy"
  shutil.copytree(built[1], copy / "radio_pretrain" / "1.0.0")
  os.remove(copy / "radio_pretrain" / "1.0.0" / STATS_FILENAME)
  with pytest.raises(FileNotFoundError, match=r"stats\.json.*make_dataset"):
    make_source(data_config(source="tfds", data_dir=str(copy)), SHAPE, SEED)


def test_make_dataset_command(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.make_dataset", "--dataset=radio_pretrain",
       f"--data_dir={tmp_path}", "--num_examples=3", "--num_eval_examples=2", "--height=8",
       "--width=16", "--channels=2"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  version_dir = tmp_path / "radio_pretrain" / "1.0.0"
  assert f"Built radio_pretrain in {version_dir}" in result.stdout
  assert read_stats(str(version_dir / STATS_FILENAME))["num_examples"] == 3
  with open(version_dir / "metadata.json") as f:
    assert json.load(f)["num_eval_examples"] == 2
