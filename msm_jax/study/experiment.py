"""The paper's study, end to end and resumable: pretrain at several masking ratios, linear-probe
both downstream tasks from each, train the same encoder and a ~4x larger one from scratch, and
measure the reconstruction-accuracy curve. Results go to WORKDIR/results.{json,md} and plots.

Every run lives in its own sub-workdir and records run.json when it finishes, so rerunning the
study skips finished runs and resumes an interrupted one from its last checkpoint.
"""
import json
import os
import time

import numpy as np
from absl import logging

from configs import finetune as finetune_configs
from configs import pretrain as pretrain_configs
from msm_jax.study.report import write_report

TASKS = ("har", "seg")


def _timed(workdir: str, run):
  """Runs `run()` unless `workdir` has a run.json; returns the stored record {wall_s, ...}."""
  record_path = os.path.join(workdir, "run.json")
  os.makedirs(workdir, exist_ok=True)
  if os.path.exists(record_path):
    with open(record_path) as f:
      return json.load(f)
  start = time.perf_counter()
  record = run() or {}
  record["wall_s"] = time.perf_counter() - start
  with open(record_path, "w") as f:
    json.dump(record, f, indent=2)
  return record


def build_datasets(config, data_dir: str) -> dict:
  """Builds (or reuses) the study's three datasets; returns {purpose: dataset name}."""
  from msm_jax.data import radio_pretrain, radio_segmentation
  from msm_jax.data.csi import csi_har
  n, seed = config.examples, config.seed
  radio_pretrain.build(data_dir, num_examples=n.pretrain, shape=config.pretrain_shape, seed=seed,
                       generator=config.pretrain_generator, num_eval_examples=n.eval)
  radio_segmentation.build(data_dir, num_examples=n.seg, shape=config.shapes.seg, seed=seed,
                           num_eval_examples=n.eval)
  csi_har.build(data_dir, shape=config.shapes.har, num_examples=n.har, seed=seed,
                num_eval_examples=n.eval)
  return {"pretrain": radio_pretrain.NAME, "seg": radio_segmentation.NAME, "har": csi_har.NAME}


def _use_tfds(data, name: str, data_dir: str, eval_split: str | None = None):
  data.update(source="tfds", name=name, data_dir=data_dir)
  if eval_split:
    data.update(eval_split=eval_split, eval_examples=0)


def pretrain_config(config, ratio: float, data_dir: str):
  c = pretrain_configs.get_config(config.size)
  c.update(config.pretrain.to_dict())
  c.update(input_shape=tuple(config.pretrain_shape), mask_ratio=float(ratio), seed=config.seed)
  _use_tfds(c.data, "radio_pretrain", data_dir)
  return c


def finetune_config(config, task: str, data_dir: str, *, recipe: str, init_from: str = "",
                    large=False):
  """recipe 'probe' (config.probe: frozen encoder) or 'scratch' (config.scratch: all trains)."""
  c = finetune_configs.get_config(f"{task}_{config.size}")
  c.update(config[recipe].to_dict())
  c.update(input_shape=tuple(config.shapes[task]), init_from=init_from, seed=config.seed)
  if large:
    c.model.encoder = dict(config.large_encoder)
    c.model.encoder_name = "large"
  _use_tfds(c.data, finetune_configs.DATASET_OF[task], data_dir, eval_split="test")
  return c


def run_experiment(config, workdir: str) -> dict:
  """Runs (or resumes) the whole study; returns the results dict also written to results.json."""
  from msm_jax.data.source import make_source
  from msm_jax.finetune.task import finetune
  from msm_jax.study.reconstruction import reconstruction_curve
  from msm_jax.training.pretrain import pretrain

  data_dir = config.data_dir or os.path.join(workdir, "data")
  os.makedirs(workdir, exist_ok=True)
  data = _timed(data_dir, lambda: {"datasets": build_datasets(config, data_dir)})
  results = {"variant": config.variant, "data_build_s": data["wall_s"], "pretrain": {},
             "finetune": [], "reconstruction": {}}

  recon_images, recon_s = None, 0.0
  for ratio in config.mask_ratios:
    name = f"pretrain_{round(ratio * 100)}"
    pre_dir = os.path.join(workdir, name)
    pre_config = pretrain_config(config, ratio, data_dir)
    logging.info("Study: %s", name)

    def run_pretrain():
      pretrain(pre_config, pre_dir)
      return _last_metrics(pre_dir)

    record = _timed(pre_dir, run_pretrain)
    results["pretrain"][name] = dict(record, mask_ratio=ratio)
    if recon_images is None:
      test = make_source(pre_config.data, pre_config.input_shape, config.seed, split="test")
      recon_images = np.concatenate([b["image"] for b in test.epoch(64, config.recon_examples)])
    recon_start = time.perf_counter()
    results["reconstruction"][name] = reconstruction_curve(
        pre_config, pre_dir, recon_images, config.test_mask_ratios)
    recon_s += time.perf_counter() - recon_start

    for task in TASKS:
      results["finetune"].append(_finetune_run(
          finetune, finetune_config(config, task, data_dir, recipe="probe", init_from=pre_dir),
          task,
          os.path.join(workdir, f"{task}_probe_{round(ratio * 100)}"),
          f"probe from {name}", ratio))
  # Baselines. "probe of random init" is the control for the probes: the same frozen encoder
  # and head recipe without pretraining, so any gap between them is what pretraining learned.
  baselines = (("probe of random init", "probe_random", dict(recipe="probe")),
               ("scratch", "scratch", dict(recipe="scratch")),
               ("scratch large", "scratch_large", dict(recipe="scratch", large=True)))
  for task in TASKS:
    for label, name, options in baselines:
      results["finetune"].append(_finetune_run(
          finetune, finetune_config(config, task, data_dir, **options), task,
          os.path.join(workdir, f"{task}_{name}"), label, None))
  # What the study costs from scratch: the recorded time of every run (a rerun that skips finished
  # runs measures only what it redid), plus the reconstruction curves.
  results["total_wall_s"] = recon_s + data["wall_s"] + sum(
      r["wall_s"] for r in (*results["pretrain"].values(), *results["finetune"]))
  write_report(results, config, workdir)
  return results


def _last_metrics(workdir: str) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {"final": json.loads(f.readlines()[-1])}


def _finetune_run(finetune, ft_config, task, run_dir, label, ratio):
  logging.info("Study: %s (%s)", label, task)

  def run():
    _, metrics = finetune(ft_config, run_dir)
    return {"metrics": metrics}

  record = _timed(run_dir, run)
  metrics = record["metrics"]
  score = metrics["accuracy"] if task == "har" else metrics["mean_iou"]
  return {"task": task, "run": label, "mask_ratio": ratio, "mode": ft_config.mode,
          "encoder": ft_config.model.encoder_name, "score": score,
          "metric": "accuracy" if task == "har" else "mean IoU",
          "pixel_accuracy": metrics.get("pixel_accuracy"),
          "trainable_params": metrics["trainable_params"], "total_params": metrics["total_params"],
          "wall_s": record["wall_s"], "workdir": run_dir}
