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
  config.test_mask_ratios = (0.2, 0.5, 0.95)
  return workdir, config, run_experiment(config, workdir)


def test_study_runs_every_arm_and_writes_results(study):
  workdir, config, results = study
  runs = {(r["task"], r["run"]) for r in results["finetune"]}
  for task in ("har", "seg"):
    probes = {f"{probe} {source}" for probe in ("linear probe", "paper probe")
              for source in ("from pretrain_70", "from pretrain_80", "of random init")}
    assert probes | {"scratch", "scratch large"} == {r for t, r in runs if t == task}
  by_run = {(r["task"], r["run"]): r for r in results["finetune"]}
  for task in ("har", "seg"):
    linear = by_run[(task, "linear probe from pretrain_70")]
    paper = by_run[(task, "paper probe from pretrain_70")]
    scratch = by_run[(task, "scratch")]
    assert (linear["mode"], paper["mode"], scratch["mode"]) == ("linear", "paper_probe", "full")
    # The paper's probe trains more than the linear head (a patch embedding or decoder blocks).
    assert (linear["trainable_params"] < paper["trainable_params"] < scratch["trainable_params"]
            == scratch["total_params"])
    large = by_run[(task, "scratch large")]
    assert 3.0 < large["total_params"] / scratch["total_params"] < 5.0  # "~4x larger"
    assert all(0.0 <= r["score"] <= 1.0 and r["wall_s"] > 0 for r in results["finetune"])
  assert set(by_run[("seg", "scratch")]["per_class_iou"]) == {"noise", "lte", "nr"}
  curve = results["reconstruction"]["pretrain_70"]
  assert list(curve) == [0.2, 0.5, 0.95]
  assert curve[0.2] > curve[0.95]  # more masking, less of the original pasted back
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert saved["config"]["mask_ratios"] == [0.7, 0.8]
  table = open(os.path.join(workdir, "results.md")).read()
  assert "| linear probe from pretrain_80 | tiny | linear |" in table and "mean IoU" in table
  assert "| paper probe of random init | tiny | paper_probe |" in table
  assert os.path.getsize(os.path.join(workdir, "results.png")) > 10_000


def test_label_efficiency_curve(study):
  workdir, config, results = study
  runs = results["label_efficiency"]["runs"]
  arms = ["MSM paper probe", "random-init paper probe", "scratch"]
  # 3 arms x label counts (8, 32) x seeds (0, 1), for the one task of the test variant
  assert sorted((r["task"], r["run"], r["examples"], r["seed"]) for r in runs) == sorted(
      ("har", a, n, s) for a in arms for n in (8, 32) for s in (0, 1))
  for r in runs:
    ft_config = json.load(open(os.path.join(r["workdir"], "config.json")))
    # 32 examples is the whole train split of the test datasets
    assert ft_config["data"]["split"] == ("train[:8]" if r["examples"] == 8 else "train")
    assert ft_config["seed"] == r["seed"]
    assert bool(ft_config["init_from"]) == (r["run"] == "MSM paper probe")
  # The whole split with the study's seed is the main table's run, not trained again.
  main = {r["run"]: r for r in results["finetune"] if r["task"] == "har"}
  whole = {r["run"]: r for r in runs if r["examples"] == 32 and r["seed"] == 0}
  assert whole["MSM paper probe"]["workdir"] == main["paper probe from pretrain_70"]["workdir"]
  assert whole["scratch"]["score"] == main["scratch"]["score"]
  summary = results["label_efficiency"]["summary"]
  assert len(summary) == 6
  for point in summary:
    scores = [r["score"] for r in runs if (r["task"], r["run"], r["examples"]) == (
        point["task"], point["arm"], point["examples"])]
    assert point["seeds"] == 2 and point["mean"] == pytest.approx(np.mean(scores))
    assert point["min"] == min(scores) and point["max"] == max(scores)
  table = open(os.path.join(workdir, "results.md")).read()
  assert "| labelled examples | MSM paper probe | random-init paper probe | scratch |" in table


def test_held_out_configurations_scored_per_class(study):
  workdir, _, results = study
  assert [r["run"] for r in results["held_out"]] == ["MSM paper probe", "scratch"]
  for r in results["held_out"]:
    ft_config = json.load(open(os.path.join(r["workdir"], "config.json")))
    assert ft_config["data"]["data_dir"] == os.path.join(workdir, "data", "held_out")
    present = [v for v in r["per_class_iou"].values() if v is not None]
    assert list(r["per_class_iou"]) == ["noise", "lte", "nr"]
    assert r["score"] == pytest.approx(np.mean(present))
  metadata = json.load(open(os.path.join(workdir, "data", "held_out", "radio_segmentation",
                                         "1.0.0", "metadata.json")))
  assert metadata["generator"] == "lte_nr_holdout"
  table = open(os.path.join(workdir, "results.md")).read()
  assert "| run | mean IoU | IoU noise | IoU lte | IoU nr |" in table


def test_study_refuses_a_label_efficiency_checkpoint_it_does_not_pretrain(tmp_path):
  config = get_config("test")
  config.label_efficiency.mask_ratio = 0.75  # the test variant pretrains at 0.7 and 0.8
  with pytest.raises(ValueError, match=r"label_efficiency.mask_ratio=0.75 must be one of"):
    run_experiment(config, str(tmp_path))
  assert os.listdir(tmp_path) == []  # refused before any build or run


def test_each_task_finetunes_on_its_own_schedule():
  from msm_jax.study.runs import finetune_config
  config = get_config("cpu")
  seg = finetune_config(config, "seg", "/data", recipe="paper_probe")
  har = finetune_config(config, "har", "/data", recipe="paper_probe", examples=16)
  # CSI needs far more steps than segmentation; the recipe (mode, rate) is the same for both.
  assert (seg.total_steps, seg.warmup_steps, seg.batch_size) == (200, 20, 32)
  assert (har.total_steps, har.warmup_steps, har.batch_size) == (1500, 150, 32)
  assert seg.mode == har.mode == "paper_probe" and seg.base_lr == har.base_lr == 0.02
  assert har.data.split == "train[:16]" and seg.data.split == "train"


def test_label_efficiency_summary_statistics():
  from msm_jax.study.label_efficiency import summarise
  records = [{"task": "seg", "run": "scratch", "examples": 16, "score": s} for s in (0.5, 0.7)]
  records.append({"task": "seg", "run": "scratch", "examples": 64, "score": 0.9})
  assert summarise(records) == [
      {"task": "seg", "arm": "scratch", "examples": 16, "seeds": 2, "mean": pytest.approx(0.6),
       "std": pytest.approx(0.1 * 2 ** 0.5), "min": 0.5, "max": 0.7},
      {"task": "seg", "arm": "scratch", "examples": 64, "seeds": 1, "mean": 0.9, "std": 0.0,
       "min": 0.9, "max": 0.9}]


def test_rerun_skips_finished_runs(study):
  workdir, config, results = study
  start = time.perf_counter()
  again = run_experiment(config, workdir)
  assert time.perf_counter() - start < 60
  for part in ("finetune", "held_out"):
    assert [r["wall_s"] for r in again[part]] == [r["wall_s"] for r in results[part]]
  assert again["label_efficiency"] == results["label_efficiency"]
  assert again["total_wall_s"] == pytest.approx(results["total_wall_s"], abs=30)


def predict(*args):
  result = subprocess.run([sys.executable, "-m", "launch.predict", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  return result.returncode, result.stdout, result.stderr


def test_predict_segments_a_sigmf_recording(study, tmp_path):
  workdir = os.path.join(study[0], "seg_paper_probe_70")
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
  from msm_jax.study.runs import pretrain_config
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
