"""Tests for msm_jax.metrics.evaluation and the confusion / segmentation figures, against values
computed by hand."""
import json

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from msm_jax.metrics.evaluation import (ConfusionAccumulator, classification_metrics,
                                        confusion_matrix, reconstruction_accuracy,
                                        segmentation_metrics)
from msm_jax.metrics.figures import (class_colours, save_confusion_figure,
                                     save_segmentation_figure)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Four classes; class 3 is neither true nor predicted anywhere.
LABELS = np.array([0, 0, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 1, 1, 2, 0, 2])
MATRIX = [[1, 1, 0, 0],
          [0, 1, 0, 0],
          [1, 0, 2, 0],
          [0, 0, 0, 0]]
NAMES = ["box", "circle", "clean", "fall"]


def test_confusion_matrix_by_hand():
  matrix = confusion_matrix(LABELS, PREDICTIONS, 4)
  assert matrix.dtype == np.int64
  assert matrix.tolist() == MATRIX
  # Any shape: the same ids as a (1, 2, 3) pixel map count the same.
  pixels = confusion_matrix(LABELS.reshape(1, 2, 3), PREDICTIONS.reshape(1, 2, 3), 4)
  assert pixels.tolist() == MATRIX
  assert confusion_matrix(np.zeros(0, int), np.zeros(0, int), 2).tolist() == [[0, 0], [0, 0]]


def test_confusion_matrix_matches_pairwise_count_on_large_maps():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, size=(8, 256, 256), dtype=np.int32)
  predictions = rng.integers(0, 3, size=(8, 256, 256), dtype=np.uint8)
  expected = np.zeros((3, 3), np.int64)
  np.add.at(expected, (labels.ravel(), predictions.ravel()), 1)
  np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)


@pytest.mark.parametrize("labels, predictions, num_classes, message", [
    ([0, 3], [0, 1], 3, r"labels must be class ids in \[0, 3\); 1 of 2 are not \(e.g. 3\)"),
    ([0, 1], [-1, 1], 3, r"predictions must be class ids in \[0, 3\); 1 of 2 are not \(e.g. -1\)"),
    ([0.0, 1.0], [0, 1], 3, r"labels must be integer class ids, got dtype float64"),
    ([0, 1, 1], [0, 1], 3, r"same shape"),
    ([0], [0], 0, r"num_classes must be a positive integer"),
])
def test_confusion_matrix_rejects_bad_ids(labels, predictions, num_classes, message):
  with pytest.raises(ValueError, match=message):
    confusion_matrix(np.array(labels), np.array(predictions), num_classes)


def test_accumulator_equals_one_shot():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 5, size=(6, 16, 16))
  predictions = rng.integers(0, 5, size=(6, 16, 16))
  accumulator = ConfusionAccumulator(5)
  for start in range(0, 6, 2):
    accumulator.update(labels[start:start + 2], predictions[start:start + 2])
  np.testing.assert_array_equal(accumulator.matrix, confusion_matrix(labels, predictions, 5))
  snapshot = accumulator.matrix
  accumulator.update(labels[:1], predictions[:1])
  assert snapshot.sum() == labels.size  # a copy: later updates leave it alone
  assert accumulator.matrix.sum() == labels.size + 16 * 16
  with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 5\)"):
    accumulator.update(np.array([7]), np.array([0]))
  with pytest.raises(ValueError, match="num_classes"):
    ConfusionAccumulator(0)


def test_classification_metrics_by_hand():
  metrics = classification_metrics(np.array(MATRIX), NAMES)
  assert metrics["num_examples"] == 6
  assert metrics["accuracy"] == pytest.approx(4 / 6)
  assert metrics["per_class_accuracy"] == {
      "box": pytest.approx(1 / 2), "circle": 1.0, "clean": pytest.approx(2 / 3), "fall": None}
  # Mean over the three classes that have examples; "fall" is left out, not counted as 0.
  assert metrics["macro_accuracy"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
  assert metrics["per_class_count"] == {"box": 2, "circle": 1, "clean": 3, "fall": 0}
  assert metrics["class_names"] == NAMES
  assert metrics["confusion_matrix"] == MATRIX
  # Strict JSON: no NaN, only python scalars.
  assert json.loads(json.dumps(metrics, allow_nan=False))["per_class_accuracy"]["fall"] is None


def test_segmentation_metrics_by_hand_class_absent_everywhere():
  matrix = confusion_matrix(LABELS.reshape(2, 3), PREDICTIONS.reshape(2, 3), 4)
  metrics = segmentation_metrics(matrix, NAMES)
  # IoU = TP / (TP + FP + FN): box 1/(1+1+1), circle 1/(1+1+0), clean 2/(2+0+1).
  assert metrics["per_class_iou"] == {
      "box": pytest.approx(1 / 3), "circle": pytest.approx(1 / 2), "clean": pytest.approx(2 / 3),
      "fall": None}
  assert metrics["mean_iou"] == pytest.approx((1 / 3 + 1 / 2 + 2 / 3) / 3)
  assert metrics["pixel_accuracy"] == pytest.approx(4 / 6)
  assert metrics["per_class_accuracy"]["fall"] is None
  assert metrics["per_class_accuracy"]["clean"] == pytest.approx(2 / 3)
  assert metrics["per_class_pixels"] == {"box": 2, "circle": 1, "clean": 3, "fall": 0}
  assert metrics["num_pixels"] == 6
  assert metrics["class_names"] == NAMES
  assert metrics["confusion_matrix"] == MATRIX
  json.dumps(metrics, allow_nan=False)


def test_segmentation_metrics_class_predicted_but_never_true():
  labels = np.array([[0, 0], [1, 1]])
  predictions = np.array([[0, 2], [1, 1]])
  metrics = segmentation_metrics(confusion_matrix(labels, predictions, 3), ["noise", "LTE", "NR"])
  # NR: TP 0, FP 1, FN 0 -> IoU 0, and it counts in the mean; it has no true pixels -> no accuracy.
  assert metrics["per_class_iou"] == {"noise": 0.5, "LTE": 1.0, "NR": 0.0}
  assert metrics["mean_iou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
  assert metrics["per_class_accuracy"] == {"noise": 0.5, "LTE": 1.0, "NR": None}
  assert metrics["pixel_accuracy"] == 0.75


def test_metrics_without_examples_and_bad_inputs():
  empty = segmentation_metrics(np.zeros((2, 2), np.int64), ["a", "b"])
  assert empty["pixel_accuracy"] is None and empty["mean_iou"] is None
  assert classification_metrics(np.zeros((2, 2), np.int64), ["a", "b"])["accuracy"] is None
  with pytest.raises(ValueError, match="2 distinct names"):
    classification_metrics(np.zeros((2, 2), np.int64), ["a"])
  with pytest.raises(ValueError, match="2 distinct names"):
    segmentation_metrics(np.zeros((2, 2), np.int64), ["a", "a"])
  with pytest.raises(ValueError, match="square integer"):
    segmentation_metrics(np.zeros((2, 3), np.int64), ["a", "b"])
  with pytest.raises(ValueError, match="negative"):
    classification_metrics(np.array([[1, -1], [0, 0]]), ["a", "b"])


def _blocks(means_or_pixels):
  """A 6x6 image of four 3x3 blocks, given as a 2x2 nested list of 3x3 blocks."""
  return np.block([[np.asarray(b, float) for b in row] for row in means_or_pixels])


# Pooled original [[0, 0], [0, 4]]: mean 1, std (ddof=1) sqrt((1+1+1+9)/3) = 2, threshold 1 + 1 = 2
# -> binary [[F, F], [F, T]].
ORIGINAL = _blocks([[np.zeros((3, 3)), np.zeros((3, 3))],
                    [np.zeros((3, 3)), np.full((3, 3), 4.0)]])
# Pooled reconstruction [[3, 2], [0, 1]]: top-left 27/9 = 3 > 2 disagrees; top-right 18/9 = 2 is
# not > 2 and agrees (with ddof=0 the threshold would be 1.87 and it would disagree); bottom-right
# 1 < 2 disagrees. 2 of 4 cells agree.
RECONSTRUCTION = _blocks([[[[9, 0, 0], [9, 0, 0], [9, 0, 0]], [[9, 9, 0], [0, 0, 0], [0, 0, 0]]],
                          [np.zeros((3, 3)), np.ones((3, 3))]])


def test_reconstruction_accuracy_by_hand():
  assert reconstruction_accuracy(ORIGINAL[None], RECONSTRUCTION[None]) == 0.5
  assert reconstruction_accuracy(ORIGINAL[None], ORIGINAL[None]) == 1.0
  # std_factor 0: threshold 1, so the top-right cell (2 > 1) now disagrees too.
  assert reconstruction_accuracy(ORIGINAL[None], RECONSTRUCTION[None], std_factor=0.0) == 0.25


def test_reconstruction_accuracy_crops_remainder_and_scores_per_sample():
  # A 7x8 image: the last row and the last two columns are not a whole 3x3 cell and are cropped;
  # were they pooled or counted in the statistics, the huge values would change the result.
  def pad(image):
    padded = np.full((7, 8), 1000.0)
    padded[:6, :6] = image
    return padded

  original = np.stack([pad(ORIGINAL), pad(ORIGINAL)])
  reconstruction = np.stack([pad(RECONSTRUCTION), pad(ORIGINAL)])
  scores = reconstruction_accuracy(original, reconstruction, per_sample=True)
  np.testing.assert_array_equal(scores, [0.5, 1.0])
  assert reconstruction_accuracy(original, reconstruction) == 0.75


def test_reconstruction_accuracy_channels_share_one_threshold_per_sample():
  original = np.stack([ORIGINAL, ORIGINAL], axis=-1)[None]
  reconstruction = np.stack([RECONSTRUCTION, ORIGINAL], axis=-1)[None]
  # Pooled original over both channels: [0, 0, 0, 4] twice -> mean 1, variance (6 * 1 + 2 * 9) / 7,
  # threshold 1 + 0.5 * sqrt(24 / 7) = 1.93. Channel 0 cells 3, 2, 0, 1 -> T, T, F, F against
  # F, F, F, T: one agrees. Channel 1 is the original: four agree. 5 of 8.
  assert reconstruction_accuracy(original, reconstruction) == 5 / 8


def test_reconstruction_accuracy_pastes_original_outside_mask():
  noise = np.random.default_rng(2).normal(size=(1, 6, 6)) * 50
  mask = np.zeros((1, 6, 6), bool)
  mask[0, :3, :3] = True  # only the top-left cell is masked: it takes the reconstruction's 3
  reconstruction = np.where(mask, RECONSTRUCTION[None], noise)
  assert reconstruction_accuracy(ORIGINAL[None], reconstruction, mask=mask) == 0.75
  rng = np.random.default_rng(3)
  images = rng.normal(size=(4, 20, 20, 3))
  np.testing.assert_array_equal(reconstruction_accuracy(images, images, per_sample=True),
                                np.ones(4))


@pytest.mark.parametrize("kwargs, message", [
    (dict(reconstruction=np.zeros((1, 6, 5))), "one non-empty shape"),
    (dict(original=np.zeros((6, 6)), reconstruction=np.zeros((6, 6))), "one non-empty shape"),
    (dict(pool=7), r"pool must be an integer in \[1, 6\]"),
    (dict(pool=0), r"pool must be an integer"),
    (dict(mask=np.zeros((1, 3, 3), bool)), r"mask must have shape \(1, 6, 6\)"),
])
def test_reconstruction_accuracy_rejects_bad_inputs(kwargs, message):
  args = {"original": np.zeros((1, 6, 6)), "reconstruction": np.zeros((1, 6, 6)), **kwargs}
  with pytest.raises(ValueError, match=message):
    reconstruction_accuracy(**args)


def _read_png(path):
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  return matplotlib.image.imread(str(path))[..., :3]


def _pixels_of(png, rgba):
  return int((np.abs(png - np.asarray(rgba)[:3]).max(axis=-1) < 0.02).sum())


def test_confusion_figure(tmp_path):
  path = tmp_path / "new" / "dir" / "confusion.png"
  matrix = np.array([[50, 0, 0], [5, 5, 0], [0, 0, 0]])
  assert save_confusion_figure(str(path), matrix, ["noise", "LTE", "NR"], "test") == str(path)
  png = _read_png(path)
  assert png.shape[:2] == (500, 560)  # (2.5 + 0.7 * 3 + 0.4) x (3.5 + 0.7 * 3) inches at 100 dpi
  # Row-normalised: the 50-count cell and the 5-count cells differ in colour as 100 % vs 50 %.
  blues = matplotlib.colormaps["Blues"]
  assert _pixels_of(png, blues(1.0)) > 1000
  assert _pixels_of(png, blues(0.5)) > 1000
  with pytest.raises(ValueError, match=r"matrix must have shape \(2, 2\)"):
    save_confusion_figure(str(tmp_path / "bad.png"), matrix, ["a", "b"])


def test_segmentation_figure_colours_and_layout(tmp_path):
  rng = np.random.default_rng(4)
  spectrograms = rng.normal(size=(3, 32, 24, 1)).astype(np.float32)
  truth = np.zeros((3, 32, 24), np.int64)
  truth[:, :, 12:] = 1
  prediction = np.full((3, 32, 24), 2, np.int64)  # only NR: must still be NR's colour
  names = ["noise", "LTE", "NR"]
  colours = class_colours(3)

  path = tmp_path / "seg" / "overlay.png"
  assert save_segmentation_figure(str(path), spectrograms, truth, prediction, names, "t",
                                  max_examples=2) == str(path)
  png = _read_png(path)
  assert png.shape[:2] == (600, 1240)  # 2 rows x 2.8 + 0.4, 3 panels x 3.6 + 1.6 inches
  for colour in colours:
    assert _pixels_of(png, colour) > 5000

  unlabelled = tmp_path / "unlabelled.png"
  save_segmentation_figure(str(unlabelled), spectrograms[..., 0], None, prediction, names)
  png = _read_png(unlabelled)
  assert png.shape[:2] == (840, 880)  # 3 rows x 2.8, 2 panels x 3.6 + 1.6 inches
  assert _pixels_of(png, colours[2]) > 20000
  assert _pixels_of(png, colours[1]) < 1000  # the legend swatch only: no truth panel


@pytest.mark.parametrize("truth, prediction, message", [
    (None, np.full((1, 8, 8), 3), r"prediction holds class ids outside \[0, 3\)"),
    (np.zeros((1, 8, 7), int), np.zeros((1, 8, 8), int), r"truth must be integer class ids"),
    (None, np.zeros((1, 8, 8)), r"prediction must be integer class ids"),
])
def test_segmentation_figure_rejects_bad_maps(tmp_path, truth, prediction, message):
  with pytest.raises(ValueError, match=message):
    save_segmentation_figure(str(tmp_path / "x.png"), np.zeros((1, 8, 8)), truth, prediction,
                             ["noise", "LTE", "NR"])
  assert not (tmp_path / "x.png").exists()
