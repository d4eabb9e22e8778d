"""Evaluation of a finetuned model on a whole split: metrics JSON and figures.

Predictions are accumulated into one confusion matrix batch by batch, so a split of any size (and
per-pixel segmentation maps) never has to fit in memory.
"""
import os

import jax
import numpy as np

from msm_jax.metrics.evaluation import (ConfusionAccumulator, classification_metrics,
                                        segmentation_metrics)


def confusion(task, params, batches, num_shown: int = 0):
  """(confusion matrix of `task`'s predictions over `batches`, the first batch's first
  `num_shown` (images, labels, predictions), or None when `batches` is empty)."""
  params = jax.device_put(params)  # once, not once per batch
  accumulator = ConfusionAccumulator(len(task.classes))
  shown = None
  for batch in batches:
    prediction = np.asarray(task.predict(params, batch["image"])).argmax(-1)
    accumulator.update(batch["label"], prediction)
    if shown is None:
      shown = (batch["image"][:num_shown, ..., 0], batch["label"][:num_shown],
               prediction[:num_shown])
  return accumulator.matrix, shown


def task_metrics(config, matrix, classes) -> dict:
  """Classification or segmentation metrics (config.task) of a confusion matrix."""
  summarise = segmentation_metrics if config.task == "segmentation" else classification_metrics
  return summarise(matrix, list(classes))


def evaluate(task, params, source, config, workdir: str) -> dict:
  """Metrics of `task` with `params` over `source.epoch(...)`; figures into WORKDIR/figures
  unless config.figure_examples is 0."""
  from msm_jax.metrics.figures import save_confusion_figure, save_segmentation_figure  # matplotlib
  classes = list(task.classes)
  matrix, shown = confusion(task, params,
                            source.epoch(config.eval_batch_size, config.data.eval_examples),
                            config.figure_examples)
  if shown is None:
    raise ValueError(f"config.data.eval_split={config.data.eval_split!r} has no examples.")
  metrics = task_metrics(config, matrix, classes)
  split_name = config.data.eval_split
  metrics["split"] = split_name
  if not config.figure_examples:  # figures off (e.g. the study's many label-efficiency runs)
    return metrics
  figures = os.path.join(workdir, "figures")
  save_confusion_figure(os.path.join(figures, f"confusion_{split_name}.png"), matrix, classes,
                        title=f"{config.task} on {split_name}")
  if config.task == "segmentation":
    save_segmentation_figure(os.path.join(figures, f"segmentation_{split_name}.png"), *shown,
                             classes, title=f"segmentation on {split_name}")
  return metrics
