"""The paper's study, end to end and resumable: pretrain at several masking ratios; from each
checkpoint run both probes (strict linear and the paper's) on both downstream tasks; the same
probes of a random encoder; the same encoder and a ~4x larger one from scratch; a label-efficiency
curve; segmentation of held-out carrier configurations; the reconstruction-accuracy curve.
Results go to WORKDIR/results.{json,md,png}.

Every run lives in its own sub-workdir and records run.json when it finishes, so rerunning the
study skips finished runs and resumes an interrupted one from its last checkpoint. Compiled
programs are cached in WORKDIR/jax_cache (runs.compilation_cache).
"""
import json
import os
import time

import numpy as np
from absl import logging

from msm_jax.study import held_out, label_efficiency
from msm_jax.study.report import write_report
from msm_jax.study.runs import (compilation_cache, finetune_config, finetune_run,
                                pretrain_config, pretrain_name, run_name, timed)

TASKS = ("har", "seg")
PROBE_NAMES = {"linear": "linear probe", "paper_probe": "paper probe"}  # config.probes' rows


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


def check_config(config) -> None:
  """Refuses a study that would fail after hours: unknown probes or tasks, or a label-efficiency
  checkpoint the study does not pretrain."""
  le = config.label_efficiency
  if le.mask_ratio not in config.mask_ratios:
    raise ValueError(f"config.label_efficiency.mask_ratio={le.mask_ratio} must be one of "
                     f"config.mask_ratios={tuple(config.mask_ratios)}, the checkpoints pretrained.")
  if not set(le.tasks) <= set(TASKS):
    raise ValueError(f"config.label_efficiency.tasks={tuple(le.tasks)} must be among {TASKS}.")
  unknown = set(config.probes) - set(PROBE_NAMES)
  if unknown:
    raise ValueError(f"config.probes={tuple(config.probes)}: {sorted(unknown)} are not probe "
                     f"recipes {tuple(PROBE_NAMES)}.")


def run_experiment(config, workdir: str) -> dict:
  """Runs (or resumes) the whole study; returns the results dict also written to results.json."""
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  with compilation_cache(os.path.join(workdir, "jax_cache")):
    results = _run(config, workdir)
  write_report(results, config, workdir)
  return results


def _run(config, workdir: str) -> dict:
  from msm_jax.data.source import make_source
  from msm_jax.finetune.task import finetune
  from msm_jax.study.reconstruction import reconstruction_curve
  from msm_jax.training.pretrain import pretrain

  data_dir = config.data_dir or os.path.join(workdir, "data")
  data = timed(data_dir, lambda: {"datasets": build_datasets(config, data_dir)})
  held_out_dir = os.path.join(data_dir, "held_out")
  held_out_data = timed(held_out_dir,
                        lambda: {"dataset": held_out.build_dataset(config, held_out_dir)})
  results = {"variant": config.variant, "data_build_s": data["wall_s"] + held_out_data["wall_s"],
             "pretrain": {}, "finetune": [], "reconstruction": {}}

  def finetune_arm(task, label, recipe, ratio=None, large=False):
    pretrained = os.path.join(workdir, pretrain_name(ratio)) if ratio else ""
    ft_config = finetune_config(config, task, data_dir, recipe=recipe, init_from=pretrained,
                                large=large)
    run_dir = os.path.join(workdir, run_name(task, recipe, ratio) + ("_large" if large else ""))
    results["finetune"].append(finetune_run(finetune, ft_config, run_dir, label,
                                            mask_ratio=ratio))

  recon_images, recon_s = None, 0.0
  for ratio in config.mask_ratios:
    name = pretrain_name(ratio)
    pre_dir = os.path.join(workdir, name)
    pre_config = pretrain_config(config, ratio, data_dir)
    logging.info("Study: %s", name)

    def run_pretrain():
      pretrain(pre_config, pre_dir)
      return _last_metrics(pre_dir)

    record = timed(pre_dir, run_pretrain)
    results["pretrain"][name] = dict(record, mask_ratio=ratio)
    if recon_images is None:
      test = make_source(pre_config.data, pre_config.input_shape, config.seed, split="test")
      recon_images = np.concatenate([b["image"] for b in test.epoch(64, config.recon_examples)])
    recon_start = time.perf_counter()
    results["reconstruction"][name] = reconstruction_curve(
        pre_config, pre_dir, recon_images, config.test_mask_ratios)
    recon_s += time.perf_counter() - recon_start
    for task in TASKS:
      for recipe in config.probes:
        finetune_arm(task, f"{PROBE_NAMES[recipe]} from {name}", recipe, ratio)
  # Baselines. The probes of a random encoder are the control for the probes: the same recipe
  # without pretraining, so any gap between them is what pretraining learned.
  for task in TASKS:
    for recipe in config.probes:
      finetune_arm(task, f"{PROBE_NAMES[recipe]} of random init", recipe)
    finetune_arm(task, "scratch", "scratch")
    finetune_arm(task, "scratch large", "scratch", large=True)
  curve = label_efficiency.label_efficiency_runs(finetune, config, workdir, data_dir)
  results["label_efficiency"] = {"runs": curve, "summary": label_efficiency.summarise(curve)}
  results["held_out"] = held_out.held_out_runs(finetune, config, workdir, held_out_dir)
  # What the study costs from scratch: the recorded time of every run (a rerun that skips finished
  # runs measures only what it redid; a label-efficiency point that is a main-table run counts
  # once), plus the reconstruction curves.
  reused = {r["workdir"] for r in results["finetune"]}
  runs = [*results["finetune"], *results["held_out"],
          *(r for r in curve if r["workdir"] not in reused)]
  results["total_wall_s"] = recon_s + results["data_build_s"] + sum(
      r["wall_s"] for r in (*results["pretrain"].values(), *runs))
  return results


def _last_metrics(workdir: str) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {"final": json.loads(f.readlines()[-1])}
