"""Evaluation metrics for finetuning and pretraining: numpy only, results ready for json.dump.

Classification (activities) and segmentation (per-pixel noise / LTE / NR) are both scored from one
confusion matrix, rows = true class, columns = predicted class. It is accumulated batch by batch
(`ConfusionAccumulator`), so an evaluation over many batches keeps K*K counts, never the
predictions. Metrics a class cannot have (accuracy of a class with no examples, IoU of a class that
is neither true nor predicted anywhere) are None, which json writes as null: a NaN would make
eval.json invalid JSON for strict parsers and would poison any mean taken over it.

`reconstruction_accuracy` is the radio foundation model paper's pretraining metric.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _check_ids(name: str, ids: np.ndarray, num_classes: int) -> np.ndarray:
  if ids.dtype.kind not in "iub":
    raise ValueError(f"{name} must be integer class ids, got dtype {ids.dtype}")
  ids = ids.astype(np.int64, copy=False)
  bad = (ids < 0) | (ids >= num_classes)
  if bad.any():
    raise ValueError(f"{name} must be class ids in [0, {num_classes}); {int(bad.sum())} of "
                     f"{ids.size} are not (e.g. {int(ids[bad][0])}); min {int(ids.min())}, "
                     f"max {int(ids.max())}")
  return ids


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """Counts (true class, predicted class) pairs: int64 (K, K), rows = truth, columns = prediction.

  labels, predictions: integer class ids of one shape, any shape (one id per sample, or per pixel
  of (N, Nt, Nf) label maps). One np.bincount over K * label + prediction, so a few million pixels
  cost milliseconds. Raises ValueError for shape mismatches, non-integer arrays and ids outside
  [0, num_classes).
  """
  if int(num_classes) != num_classes or num_classes < 1:
    raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
  num_classes = int(num_classes)
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have the "
                     "same shape")
  labels = _check_ids("labels", labels, num_classes)
  predictions = _check_ids("predictions", predictions, num_classes)
  counts = np.bincount((labels * num_classes + predictions).ravel(),
                       minlength=num_classes * num_classes)
  return counts.astype(np.int64).reshape(num_classes, num_classes)


class ConfusionAccumulator:
  """Sums confusion matrices over batches: `update(labels, predictions)` per batch, then
  `matrix`."""

  def __init__(self, num_classes: int):
    # Validates num_classes once, through the same path as every update.
    self._matrix = confusion_matrix(np.zeros(0, np.int64), np.zeros(0, np.int64), num_classes)

  @property
  def num_classes(self) -> int:
    return self._matrix.shape[0]

  def update(self, labels, predictions) -> None:
    """Adds one batch (any shape, see `confusion_matrix`); accepts numpy or JAX arrays."""
    self._matrix += confusion_matrix(labels, predictions, self.num_classes)

  @property
  def matrix(self) -> np.ndarray:
    """The counts so far, int64 (K, K); a copy, so later updates do not change it."""
    return self._matrix.copy()


def _check_matrix(matrix, class_names: Sequence[str]) -> np.ndarray:
  matrix = np.asarray(matrix)
  if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.dtype.kind not in "iu":
    raise ValueError(f"matrix must be a square integer confusion matrix, got {matrix.dtype} "
                     f"{matrix.shape}")
  if len(class_names) != matrix.shape[0] or len(set(class_names)) != len(class_names):
    raise ValueError(f"class_names must be {matrix.shape[0]} distinct names, one per row of the "
                     f"matrix, got {list(class_names)}")
  if (matrix < 0).any():
    raise ValueError("matrix holds negative counts")
  return matrix.astype(np.int64)


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> list[float | None]:
  return [float(n / d) if d > 0 else None for n, d in zip(numerators, denominators)]


def _mean(values: list[float | None]) -> float | None:
  present = [v for v in values if v is not None]
  return float(np.mean(present)) if present else None


def classification_metrics(matrix, class_names: Sequence[str]) -> dict:
  """Activity-classification metrics from a confusion matrix (rows = truth), json-ready.

  Returns:
    num_examples: total count.
    accuracy: top-1 accuracy (trace / total); None without examples.
    macro_accuracy: mean of the per-class accuracies over classes that have examples, so that a
      small class counts as much as a large one.
    per_class_accuracy: {name: recall, correct / true examples of the class, or None}.
    per_class_count: {name: number of true examples of the class}.
    class_names: the names, in matrix order.
    confusion_matrix: the matrix as nested lists of ints.
  """
  matrix = _check_matrix(matrix, class_names)
  names = [str(n) for n in class_names]
  total = int(matrix.sum())
  support = matrix.sum(axis=1)
  per_class = _ratios(np.diag(matrix), support)
  return {
      "num_examples": total,
      "accuracy": float(np.trace(matrix) / total) if total else None,
      "macro_accuracy": _mean(per_class),
      "per_class_accuracy": dict(zip(names, per_class)),
      "per_class_count": dict(zip(names, (int(s) for s in support))),
      "class_names": names,
      "confusion_matrix": matrix.tolist(),
  }


def segmentation_metrics(matrix, class_names: Sequence[str]) -> dict:
  """Per-pixel segmentation metrics from a pixel confusion matrix (rows = truth), json-ready.

  IoU of class c = TP / (TP + FP + FN) over all evaluated pixels (accumulated over the dataset,
  not averaged per image). A class absent from both truth and prediction has no IoU (None) and is
  left out of mean_iou; a class predicted but never true has IoU 0 and counts, because those
  false positives are errors the mean must show.

  Returns:
    num_pixels: total count.
    pixel_accuracy: fraction of pixels whose class is right (the paper's "accuracy").
    mean_iou: mean of per_class_iou over classes present in truth or prediction.
    per_class_iou: {name: IoU or None}.
    per_class_accuracy: {name: recall over the class's true pixels, or None without any}.
    per_class_pixels: {name: number of true pixels of the class}.
    class_names: the names, in matrix order.
    confusion_matrix: the matrix as nested lists of ints.
  """
  matrix = _check_matrix(matrix, class_names)
  names = [str(n) for n in class_names]
  total = int(matrix.sum())
  true_positives = np.diag(matrix)
  support = matrix.sum(axis=1)
  union = support + matrix.sum(axis=0) - true_positives
  iou = _ratios(true_positives, union)
  return {
      "num_pixels": total,
      "pixel_accuracy": float(true_positives.sum() / total) if total else None,
      "mean_iou": _mean(iou),
      "per_class_iou": dict(zip(names, iou)),
      "per_class_accuracy": dict(zip(names, _ratios(true_positives, support))),
      "per_class_pixels": dict(zip(names, (int(s) for s in support))),
      "class_names": names,
      "confusion_matrix": matrix.tolist(),
  }


def _average_pool(x: np.ndarray, pool: int) -> np.ndarray:
  """Non-overlapping pool x pool means over axes 1, 2 of (B, H, W, C), remainder cropped."""
  b, h, w, c = x.shape
  hp, wp = h // pool, w // pool
  x = x[:, :hp * pool, :wp * pool]
  return x.reshape(b, hp, pool, wp, pool, c).mean(axis=(2, 4))


def reconstruction_accuracy(original, reconstruction, pool: int = 3, std_factor: float = 0.5,
                            mask=None, per_sample: bool = False):
  """The radio foundation model paper's reconstruction accuracy (its MAE-fork evaluation script).

  Both images are average-pooled in non-overlapping pool x pool cells (stride = pool, as the
  reference's avg_pool2d(kernel_size=3, stride=3)); rows/columns beyond the last whole cell are
  cropped, as its pooling floors (224 -> 74 cells, 2 pixels dropped). Per sample, one threshold
  mean + std_factor * std of the pooled ORIGINAL over all its cells and channels (std with
  ddof=1, as torch.std) binarises both (value > threshold); the score is the fraction of cells
  (and channels) where the two binary maps agree.

  The reference scores the MAE-style pasted image: original in the visible patches, model output
  in the masked ones. Pass `mask` (True = masked pixel, shape (B, H, W)) to paste here; without
  it `reconstruction` is scored as given. Identical inputs score 1.0.

  Args:
    original, reconstruction: (B, H, W) or (B, H, W, C) of one shape; channels pooled separately.
    pool: cell size in pixels.
    std_factor: threshold offset in standard deviations of the pooled original.
    mask: optional boolean (B, H, W) pixel mask, see above.
    per_sample: return the (B,) float64 array of per-sample scores instead of their mean.

  Returns:
    A python float (mean over samples; equal to the dataset-wide fraction, since every sample has
    the same number of cells), or a (B,) array if per_sample.
  """
  original = np.asarray(original, dtype=np.float64)
  reconstruction = np.asarray(reconstruction, dtype=np.float64)
  if original.shape != reconstruction.shape or original.ndim not in (3, 4) or not original.size:
    raise ValueError(f"original and reconstruction must have one non-empty shape (B, H, W) or "
                     f"(B, H, W, C), got {original.shape} and {reconstruction.shape}")
  if original.ndim == 3:
    original, reconstruction = original[..., None], reconstruction[..., None]
  if int(pool) != pool or not 1 <= pool <= min(original.shape[1:3]):
    raise ValueError(f"pool must be an integer in [1, {min(original.shape[1:3])}] for images of "
                     f"{original.shape[1]}x{original.shape[2]}, got {pool!r}")
  pool = int(pool)
  if mask is not None:
    mask = np.asarray(mask)
    if mask.shape != original.shape[:3]:
      raise ValueError(f"mask must have shape {original.shape[:3]}, got {mask.shape}")
    reconstruction = np.where(mask.astype(bool)[..., None], reconstruction, original)

  pooled_original = _average_pool(original, pool)
  pooled_reconstruction = _average_pool(reconstruction, pool)
  flat = pooled_original.reshape(len(pooled_original), -1)
  # ddof=1 needs two cells; a single cell has no spread, so its threshold is its own value.
  spread = flat.std(axis=1, ddof=1) if flat.shape[1] > 1 else np.zeros(len(flat))
  threshold = (flat.mean(axis=1) + std_factor * spread)[:, None, None, None]
  agree = (pooled_original > threshold) == (pooled_reconstruction > threshold)
  scores = agree.reshape(len(agree), -1).mean(axis=1)
  return scores if per_sample else float(scores.mean())
