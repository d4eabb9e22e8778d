"""csi_har tfds dataset: simulated and real-file builds, read back by TfdsSource; make_dataset."""
import collections
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import csi_fixtures
from msm_jax.data.normalize import STATS_FILENAME, read_stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 16, 3)



def read_split(version_dir, split):
  from msm_jax.data.tfds_pipeline import import_tf
  _, tfds = import_tf()
  builder = tfds.builder_from_directory(version_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split))), builder.info


def test_simulated_csi_har_reads_back_with_labels_and_held_out_domains(tmp_path):
  from msm_jax.data.csi import csi_har
  from msm_jax.data.tfds_pipeline import TfdsSource
  version_dir, _ = csi_har.build(str(tmp_path), shape=SHAPE, num_examples=12, num_eval_examples=6,
                                 held_out="subject=6,7")
  train, info = read_split(version_dir, "train")
  validation, _ = read_split(version_dir, "validation")
  assert len(train) == 12 and len(validation) == 6
  assert info.features["label"].names == ["box", "circle", "clean", "fall", "run", "walk"]
  assert all(e["subject"] not in (6, 7) for e in train)
  assert all(e["subject"] in (6, 7) for e in validation)
  assert all(e["receiver"] == -1 for e in train)  # a simulated link has no receiver id
  stats = read_stats(os.path.join(version_dir, STATS_FILENAME))
  assert stats["num_examples"] == 12
  source = TfdsSource(name="csi_har", data_dir=str(tmp_path), split="train", input_shape=SHAPE,
                      seed=0, shuffle_buffer=4, prefetch=1)
  assert source.classes == ("box", "circle", "clean", "fall", "run", "walk")
  batch = next(source.epoch(5))
  assert batch["image"].shape == (5,) + SHAPE and batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32 and batch["label"].max() < 6
  with pytest.raises(ValueError, match="already holds csi_har"):
    csi_har.build(str(tmp_path), shape=SHAPE, num_examples=13)


def test_csi_har_from_real_files(tmp_path):
  from msm_jax.data.csi import csi_har
  from msm_jax.data.csi.recording import csi_to_power
  root = tmp_path / "NTU-Fi_HAR"
  written = csi_fixtures.write_ntu_fi(
      root, {"train_amp": {"walk": 6, "box": 5}, "test_amp": {"walk": 1, "box": 2}})
  version_dir, skipped = csi_har.build(str(tmp_path / "ntu"), shape=SHAPE,
                                       source=f"ntu_fi:{root}")
  assert skipped == []
  sizes = {split: len(read_split(version_dir, split)[0]) for split in ("train", "validation",
                                                                       "test")}
  assert sizes == {"train": 10, "validation": 1, "test": 3}
  test, info = read_split(version_dir, "test")
  assert info.features["label"].names == ["box", "walk"]
  expected = {path: csi_to_power(array.reshape(3, 114, -1), SHAPE)
              for path, array in written.items() if "test_amp" in path}
  for example in test:
    matches = [p for p, power in expected.items()  # float32 sums may differ in their last bit
               if np.allclose(power, example["spectrogram"], rtol=1e-6, atol=0)]
    assert len(matches) == 1
    assert info.features["label"].names[example["label"]] == os.path.basename(
        os.path.dirname(matches[0]))
    assert example["room"] == -1

  # Ten gesture instances, each logged by receivers 1 and 4; instance i is (user, gesture,
  # location) = (i % 3 + 1, i % 2 + 1, i % 8 + 1), unique for i < 10.
  widar = tmp_path / "widar"
  rng = np.random.default_rng(0)
  for i in range(10):
    for receiver in (1, 4):
      name = f"user{i % 3 + 1}-{i % 2 + 1}-{i % 8 + 1}-2-{i}-r{receiver}.dat"
      csi_fixtures.write_dat(str(widar / name), csi_fixtures.random_int8_csi(rng, 20), 0b10_01_00)
  version_dir, _ = csi_har.build(str(tmp_path / "w"), shape=(15, 10, 3), source=f"widar:{widar}")
  receivers = {}
  for split in ("train", "validation", "test"):
    examples, info = read_split(version_dir, split)
    for e in examples:
      assert e["orientation"] == 2 and e["room"] == -1
      instance = (int(e["subject"]), int(e["label"]), int(e["position"]))
      receivers.setdefault((split, instance), set()).add(int(e["receiver"]))
  assert info.features["label"].names == ["gesture_1", "gesture_2"]
  assert all(r == {1, 4} for r in receivers.values())  # both receivers, in the same split
  assert sorted(split for split, _ in receivers) == ["test"] + ["train"] * 8 + ["validation"]

  bad = tmp_path / "bad"
  csi_fixtures.write_ntu_fi(bad, {"train_amp": {"box": 10}, "test_amp": {"box": 1}}, n_packets=5)
  with pytest.raises(ValueError, match=r"box0\.mat: cannot make a \(8, 16, 3\) input"):
    csi_har.build(str(tmp_path / "b"), shape=SHAPE, source=f"ntu_fi:{bad}")


def test_csi_har_skip_bad_leaves_out_unreadable_files_and_lists_them(tmp_path):
  from msm_jax.data.csi import csi_har
  root = tmp_path / "NTU-Fi_HAR"
  written = csi_fixtures.write_ntu_fi(
      root, {"train_amp": {"walk": 6, "box": 5}, "test_amp": {"walk": 1, "box": 2}})
  corrupt = sorted(p for p in written if "train_amp" in p)[0]
  with open(corrupt, "wb") as f:
    f.write(b"not a MATLAB file")
  with pytest.raises(ValueError, match=os.path.basename(corrupt) + ": is not a readable MATLAB"):
    csi_har.build(str(tmp_path / "strict"), shape=SHAPE, source=f"ntu_fi:{root}")
  version_dir, skipped = csi_har.build(str(tmp_path / "lenient"), shape=SHAPE,
                                       source=f"ntu_fi:{root}", skip_bad=True)
  assert len(skipped) == 1 and skipped[0].startswith(corrupt + ": is not a readable MATLAB")
  sizes = {split: len(read_split(version_dir, split)[0]) for split in ("train", "validation",
                                                                       "test")}
  assert sum(sizes.values()) == 13  # 14 files, one left out
  # Every file of a split unreadable: an error naming the source, not an empty split.
  for path in written:
    if "test_amp" in path:
      with open(path, "wb") as f:
        f.write(b"")
  with pytest.raises(ValueError, match="every file of the test split is unreadable"):
    csi_har.build(str(tmp_path / "none"), shape=SHAPE, source=f"ntu_fi:{root}", skip_bad=True)


def test_widar_splits_keep_each_gesture_instance_in_one_split():
  from msm_jax.data.csi import csi_har
  fields = itertools.product((1, 2), (1, 2, 3), (1, 2), (1, 2), (1, 2, 3))  # 72 instances
  paths = [f"/w/user{u}-{g}-{l}-{o}-{r}-r{x}.dat" for u, g, l, o, r in fields for x in range(1, 7)]
  splits = csi_har.widar_splits(sorted(paths))  # sorted names put an instance's receivers together
  by_instance = {}
  for path, split in splits.items():
    by_instance.setdefault(os.path.basename(path).rsplit("-", 1)[0], set()).add(split)
  assert len(by_instance) == 72 and all(len(s) == 1 for s in by_instance.values())
  counts = collections.Counter(s for (s,) in by_instance.values())
  assert counts == {"train": 58, "validation": 7, "test": 7}
  assert splits == csi_har.widar_splits(paths[::-1])  # the order files are listed in is irrelevant


def test_simulated_and_real_ut_har_share_label_names(tmp_path):
  from msm_jax.data.csi import csi_har
  simulated = csi_har.build_params(shape=SHAPE, classes="ut_har")
  real = csi_har.build_params(shape=SHAPE, source=f"ut_har:{tmp_path}")
  assert csi_har.dataset_classes(simulated) == csi_har.dataset_classes(real) == (
      "lie_down", "fall", "walk", "pickup", "run", "sit_down", "stand_up")


def test_make_dataset_command_builds_csi_har(tmp_path):
  ut_har = tmp_path / "UT_HAR"
  csi_fixtures.write_ut_har(ut_har, {"train": 4, "val": 2, "test": 2})
  result = subprocess.run(
      [sys.executable, "-m", "launch.make_dataset", "--dataset=csi_har",
       f"--data_dir={tmp_path / 'data'}", f"--source=ut_har:{ut_har}", "--height=10",
       "--width=20", "--channels=3"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  version_dir = tmp_path / "data" / "csi_har" / "1.1.0"
  assert f"Built csi_har in {version_dir}" in result.stdout
  assert read_stats(str(version_dir / STATS_FILENAME))["num_examples"] == 4
  with open(version_dir / "metadata.json") as f:
    assert json.load(f) == {"source": "ut_har", "shape": [10, 20, 3], "path": str(ut_har)}


def write_widar(root, instances, n_packets=20):
  """Widar3.0 .dat logs of `instances` gesture instances, one receiver each."""
  rng = np.random.default_rng(0)
  for i in range(instances):
    name = f"user{i % 3 + 1}-{i % 2 + 1}-{i % 8 + 1}-2-{i}-r1.dat"
    csi_fixtures.write_dat(str(root / name), csi_fixtures.random_int8_csi(rng, n_packets), 0b100100)


def test_real_sources_that_leave_a_split_empty_are_refused_before_building(tmp_path):
  from msm_jax.data.csi import csi_har
  write_widar(tmp_path / "widar", 3)
  with pytest.raises(ValueError, match=r"widar: the validation and test split would be empty: 3 "
                                       r"\.dat files of 3 gesture instances give 3 train, 0 "
                                       r"validation, 0 test; at least 10 gesture instances"):
    csi_har.build(str(tmp_path / "w"), shape=(15, 10, 3), source=f"widar:{tmp_path / 'widar'}")
  ntu = tmp_path / "ntu"
  csi_fixtures.write_ntu_fi(ntu, {"train_amp": {"walk": 3}, "test_amp": {"walk": 1}})
  with pytest.raises(ValueError, match=r"ntu: the validation split would be empty: 3 train_amp "
                                       r"and 1 test_amp \.mat files give 3 train, 0 validation, "
                                       r"1 test"):
    csi_har.build(str(tmp_path / "n"), shape=SHAPE, source=f"ntu_fi:{ntu}")
  assert not os.path.exists(tmp_path / "w") and not os.path.exists(tmp_path / "n")


def test_make_dataset_csi_har_shape_defaults_follow_the_source(tmp_path):
  from msm_jax.data.csi import csi_har
  assert csi_har.default_shape("widar:/x") == csi_har.default_shape("simulator", "intel20") == (
      30, 496, 3)
  assert csi_har.default_shape("ut_har:/x") == (30, 240, 3)
  assert csi_har.default_shape("ntu_fi:/x") == csi_har.default_shape() == (112, 496, 3)
  write_widar(tmp_path / "widar", 10)
  result = subprocess.run(  # Intel 5300 logs have 30 subcarriers: no --height needed
      [sys.executable, "-m", "launch.make_dataset", "--dataset=csi_har", "--width=10",
       f"--data_dir={tmp_path / 'data'}", f"--source=widar:{tmp_path / 'widar'}"], cwd=REPO,
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "data" / "csi_har" / "1.1.0" / "metadata.json") as f:
    assert json.load(f)["shape"] == [30, 10, 3]
