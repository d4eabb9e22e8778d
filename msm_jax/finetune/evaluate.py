"""Evaluation of a finetuned model on a whole split: metrics JSON and figures.

Predictions are accumulated into one confusion matrix batch by batch, so a split of any size (and
per-pixel segmentation maps) never has to fit in memory.
"""
import os

import numpy as np

from msm_jax.metrics.evaluation import (ConfusionAccumulator, classification_metrics,
                                        segmentation_metrics)
from msm_jax.metrics.figures import save_confusion_figure, save_segmentation_figure


def evaluate(task, params, source, config, workdir: str) -> dict:
  """Metrics of `task` with `params` over `source.epoch(...)`; figures into WORKDIR/figures."""
  classes = task.classes
  confusion = ConfusionAccumulator(len(classes))
  shown = None
  for batch in source.epoch(config.eval_batch_size, config.data.eval_examples):
    prediction = np.asarray(task.predict(params, batch["image"])).argmax(-1)
    confusion.update(batch["label"], prediction)
    if shown is None:
      shown = (batch["image"][:config.figure_examples, ..., 0],
               batch["label"][:config.figure_examples], prediction[:config.figure_examples])
  if shown is None:
    raise ValueError(f"config.data.eval_split={config.data.eval_split!r} has no examples.")
  segmentation = config.task == "segmentation"
  summarise = segmentation_metrics if segmentation else classification_metrics
  metrics = summarise(confusion.matrix, list(classes))
  metrics["split"] = config.data.eval_split
  split_name = config.data.eval_split
  figures = os.path.join(workdir, "figures")
  save_confusion_figure(os.path.join(figures, f"confusion_{split_name}.png"), confusion.matrix,
                        list(classes), title=f"{config.task} on {split_name}")
  if segmentation:
    save_segmentation_figure(os.path.join(figures, f"segmentation_{split_name}.png"), *shown,
                             list(classes), title=f"segmentation on {split_name}")
  return metrics
