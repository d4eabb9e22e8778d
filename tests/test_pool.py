"""Pools of generated examples (config.data.num_examples > 0): what they hold, how the train
stream walks them, and the disk cache (reuse, nesting, extension, corruption, code changes)."""
import os

import numpy as np
import pytest

import toy_generators as toys
from configs.pretrain import get_config
from msm_jax.data import make_source, pool
from msm_jax.data.normalize import normalize
from msm_jax.data.synthetic import SyntheticSource

SHAPE = (16, 16, 1)
SEED = 5


def source(tmp_path, num_examples, split="train", generator="synthetic"):
  config = get_config("tiny").data
  config.update(generator=generator, num_examples=num_examples, cache_dir=str(tmp_path))
  return make_source(config, SHAPE, SEED, split=split)


def stream(src, steps, batch=4, start=0, **slice_of):
  batches = src.batches(global_batch_size=batch, start_step=start, **slice_of)
  return [next(batches) for _ in range(steps)]


def images_of(src, count, split="train"):
  """Standardised images of examples 0..count-1 of `split`, made directly."""
  return np.stack([normalize(src.example(i, split)["spectrogram"], src.stats)
                   for i in range(count)])


@pytest.fixture
def toy_generators(monkeypatch):
  toys.register(monkeypatch)


def test_train_stream_walks_the_pool_once_per_epoch(tmp_path):
  src = source(tmp_path, 8)
  expected = images_of(src, 8)
  batches = stream(src, 6)  # 3 epochs of 2 steps
  for epoch in range(3):
    images = np.concatenate([b["image"] for b in batches[2 * epoch:2 * epoch + 2]])
    order = [int(np.argmin(np.abs(expected - x).reshape(8, -1).max(1))) for x in images]
    np.testing.assert_allclose(images, expected[order], atol=1e-6)
    assert sorted(order) == list(range(8))  # every pool example once per epoch
    if epoch == 0:
      first = order
    else:
      assert order != first  # a new order each epoch
  resumed = stream(source(tmp_path, 8), 2, start=3)
  for a, b in zip(resumed, batches[3:5]):
    np.testing.assert_array_equal(a["image"], b["image"])
  halves = [stream(src, 3, process_index=p, process_count=2) for p in range(2)]
  for step in range(3):  # process slices concatenate to the global batch
    np.testing.assert_array_equal(
        np.concatenate([halves[0][step]["image"], halves[1][step]["image"]]),
        batches[step]["image"])


def test_pools_are_the_stream_examples_and_carry_labels(tmp_path, toy_generators):
  pooled = source(tmp_path, 6, generator="toy_pixel")
  fresh = source(tmp_path, 0, generator="toy_pixel")
  assert pooled.stats == fresh.stats  # from the same first train examples
  evaluated = list(source(tmp_path, 6, split="test", generator="toy_pixel").epoch(4, 6))
  direct = list(source(tmp_path, 0, split="test", generator="toy_pixel").epoch(4, 6))
  assert [len(b["image"]) for b in evaluated] == [4, 2]
  for a, b in zip(evaluated, direct):
    np.testing.assert_allclose(a["image"], b["image"], atol=1e-6)
    np.testing.assert_array_equal(a["label"], b["label"])
    assert a["label"].dtype == np.int32


def test_cache_reuses_nests_and_extends_pools(tmp_path, monkeypatch):
  made = []
  generate = pool._generate
  monkeypatch.setattr(pool, "_generate", lambda make, indices, what: (
      made.append((indices.start, indices.stop)), generate(make, indices, what))[1])
  src = source(tmp_path, 70)
  assert made == [(0, 64)]  # the statistics' examples
  pooled = src._pooled("train", 70)["spectrogram"]  # as the train stream starts
  assert made == [(0, 64), (64, 70)]
  np.testing.assert_array_equal(pooled[66], src.example(66)["spectrogram"])
  made.clear()
  again = source(tmp_path, 40)  # a smaller pool: the first 40 of the stored one
  assert made == []
  np.testing.assert_array_equal(again._pooled("train", 40)["spectrogram"], pooled[:40])
  source(tmp_path, 80)._pooled("train", 80)
  assert made == [(70, 80)]  # only what was missing
  files = os.listdir(os.path.join(tmp_path, "pools"))
  assert files == [pool.pool_name("synthetic", SHAPE, SEED, "train")]


def test_unreadable_pools_are_made_again_and_code_changes_rename_them(tmp_path, monkeypatch):
  src = source(tmp_path, 4)
  path = os.path.join(tmp_path, "pools", pool.pool_name("synthetic", SHAPE, SEED, "train"))
  good = src._pooled("train", 64)["spectrogram"]
  with open(path, "r+b") as f:
    f.truncate(100)
  warnings = []
  monkeypatch.setattr(pool.logging, "warning", lambda *args: warnings.append(args[0] % args[1:]))
  np.testing.assert_array_equal(src._pooled("train", 64)["spectrogram"], good)
  assert warnings and path in warnings[0] and "generating it again" in warnings[0]
  monkeypatch.setattr(pool, "code_digest", lambda: "edited")
  assert pool.pool_name("synthetic", SHAPE, SEED, "train") != os.path.basename(path)


def test_cache_location_and_bad_counts(tmp_path, monkeypatch):
  monkeypatch.setenv(pool.CACHE_ENV, str(tmp_path / "env"))
  assert pool.cache_dir() == str(tmp_path / "env" / "pools")
  assert pool.cache_dir(str(tmp_path / "mine")) == str(tmp_path / "mine" / "pools")
  with pytest.raises(ValueError, match=r"config\.data\.num_examples=-1"):
    SyntheticSource(SHAPE, seed=SEED, num_examples=-1)
