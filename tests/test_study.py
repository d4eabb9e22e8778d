"""The study end to end at test scale, and the predict command on files in the real formats."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from configs.experiment import get_config
from msm_jax.study.experiment import run_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("study"))
  config = get_config("test")
  config.mask_ratios = (0.7, 0.8)  # two ratios are enough to exercise the loop over ratios
  config.test_mask_ratios = (0.2, 0.5, 0.95)
  return workdir, config, run_experiment(config, workdir)


def test_study_runs_every_arm_and_writes_results(study):
  workdir, config, results = study
  runs = {(r["task"], r["run"]) for r in results["finetune"]}
  for task in ("har", "seg"):
    assert {(task, "probe from pretrain_70"), (task, "probe from pretrain_80"),
            (task, "probe of random init"), (task, "scratch"),
            (task, "scratch large")} == {r for r in runs if r[0] == task}
  by_run = {(r["task"], r["run"]): r for r in results["finetune"]}
  for task in ("har", "seg"):
    probe, scratch = by_run[(task, "probe from pretrain_70")], by_run[(task, "scratch")]
    assert probe["trainable_params"] < scratch["trainable_params"] == scratch["total_params"]
    large = by_run[(task, "scratch large")]
    assert 3.0 < large["total_params"] / scratch["total_params"] < 5.0  # "~4x larger"
    assert all(0.0 <= r["score"] <= 1.0 and r["wall_s"] > 0 for r in results["finetune"])
  curve = results["reconstruction"]["pretrain_70"]
  assert list(curve) == [0.2, 0.5, 0.95]
  assert curve[0.2] > curve[0.95]  # more masking, less of the original pasted back
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert saved["config"]["mask_ratios"] == [0.7, 0.8]
  table = open(os.path.join(workdir, "results.md")).read()
  assert "| probe from pretrain_80 | tiny | linear |" in table and "mean IoU" in table
  assert os.path.getsize(os.path.join(workdir, "results.png")) > 10_000


def test_rerun_skips_finished_runs(study):
  workdir, config, results = study
  start = time.perf_counter()
  again = run_experiment(config, workdir)
  assert time.perf_counter() - start < 60
  assert [r["wall_s"] for r in again["finetune"]] == [r["wall_s"] for r in results["finetune"]]
  assert again["total_wall_s"] == pytest.approx(results["total_wall_s"], abs=30)


def predict(*args):
  result = subprocess.run([sys.executable, "-m", "launch.predict", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  return result.returncode, result.stdout, result.stderr


def test_predict_segments_a_sigmf_recording(study, tmp_path):
  workdir = os.path.join(study[0], "seg_probe_70")
  rng = np.random.default_rng(0)
  samples = 61_440 * 40  # 40 ms at 61.44 Msps: two 16 ms windows and a dropped tail
  iq = (rng.normal(size=(samples, 2)) * 0.7).astype(np.float32)
  base = tmp_path / "capture"
  iq.tofile(f"{base}.sigmf-data")
  meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": 61.44e6,
                     "core:version": "1.0.0"},
          "captures": [{"core:sample_start": 0, "core:frequency": 3.5e9}], "annotations": []}
  (tmp_path / "capture.sigmf-meta").write_text(json.dumps(meta))
  code, out, err = predict(f"--workdir={workdir}", f"--input={base}.sigmf-meta",
                           f"--output={tmp_path}/out/capture")
  assert code == 0, err[-3000:]
  maps = np.load(tmp_path / "out" / "capture.npy")
  assert maps.shape == (2, 64, 64) and maps.dtype == np.uint8 and maps.max() < 3
  summary = json.load(open(tmp_path / "out" / "capture.json"))
  assert summary["classes"] == ["noise", "lte", "nr"] and len(summary["items"]) == 2
  fractions = summary["items"][0]["class_fraction"]
  assert sum(fractions.values()) == pytest.approx(1.0)
  assert os.path.getsize(tmp_path / "out" / "capture.png") > 5_000

  (tmp_path / "short.sigmf-data").write_bytes(iq[:1000].tobytes())
  (tmp_path / "short.sigmf-meta").write_text(json.dumps(meta))
  code, _, err = predict(f"--workdir={workdir}", f"--input={tmp_path}/short.sigmf-meta",
                         f"--output={tmp_path}/out/short")
  assert code != 0 and "short.sigmf-meta" in err and "shorter than one" in err


def test_predict_classifies_an_ntu_fi_file(study, tmp_path):
  scipy_io = pytest.importorskip("scipy.io")
  workdir = os.path.join(study[0], "har_scratch")
  amplitude = np.random.default_rng(1).uniform(5, 30, size=(342, 2000))
  scipy_io.savemat(tmp_path / "walk.mat", {"CSIamp": amplitude})
  code, out, err = predict(f"--workdir={workdir}", f"--input={tmp_path}/walk.mat",
                           f"--output={tmp_path}/walk")
  assert code == 0, err[-3000:]
  probabilities = np.load(tmp_path / "walk.npy")
  assert probabilities.shape == (1, 6) and probabilities.sum() == pytest.approx(1.0, abs=1e-5)
  item = json.load(open(tmp_path / "walk.json"))["items"][0]
  assert item["prediction"] == max(item["probabilities"], key=item["probabilities"].get)
  code, _, err = predict(f"--workdir={study[0]}/pretrain_70", f"--input={tmp_path}/walk.mat",
                         f"--output={tmp_path}/x")
  assert code != 0 and "pretraining checkpoint, not a finetuned model" in err


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruction_curve_scores_in_the_input_units(tmp_path, monkeypatch, norm_pix_loss):
  """A model predicting its training targets exactly scores 1.0: with norm_pix_loss those are
  per-patch standardised, and the curve must undo that as the training figure does."""
  from msm_jax.models.masking import batch_masks
  from msm_jax.study import reconstruction
  from msm_jax.study.experiment import pretrain_config
  from msm_jax.training.losses import patch_targets

  def perfect(task, params, images, rng, sample_ids):
    _, _, mask = batch_masks(rng, sample_ids, task.num_patches, task.keep)
    target = patch_targets(images, task.patch_size, task.config.norm_pix_loss)
    return target, target, mask

  monkeypatch.setattr(reconstruction.MsmTask, "predict", perfect)
  monkeypatch.setattr(reconstruction, "restore_params", lambda workdir: (None, {}))
  config = pretrain_config(get_config("test"), 0.5, str(tmp_path))
  config.norm_pix_loss = norm_pix_loss
  rng = np.random.default_rng(0)
  images = (rng.normal(size=(2,) + tuple(config.input_shape)) * 3 + 5).astype(np.float32)
  curve = reconstruction.reconstruction_curve(config, str(tmp_path), images, (0.3, 0.9))
  assert curve == {0.3: pytest.approx(1.0), 0.9: pytest.approx(1.0)}
