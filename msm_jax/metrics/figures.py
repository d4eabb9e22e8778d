"""Figures: MSM reconstructions, confusion matrices and segmentation maps.

Drawn on a bare matplotlib Figure with the Agg canvas: no pyplot, so no global backend state is
touched and nothing needs a display.
"""
from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Masked pixels are NaN in the masked-input panel; "bad" values draw grey instead of a data colour.
_CMAP = matplotlib.colormaps["viridis"].with_extremes(bad="0.7")


def patch_mask_to_pixels(masks: np.ndarray, grid_shape: tuple[int, int],
                         patch_size: tuple[int, int]) -> np.ndarray:
  """Upsamples per-patch masks (N, gt*gf), row-major over the (gt, gf) patch grid, to pixel masks
  (N, gt*ph, gf*pw): the region of the spectrogram that the patches cover."""
  masks = np.asarray(masks)
  gt, gf = grid_shape
  ph, pw = patch_size
  if masks.ndim != 2 or masks.shape[1] != gt * gf:
    raise ValueError(f"masks must have shape (N, {gt * gf}) for a {gt}x{gf} patch grid, "
                     f"got {masks.shape}")
  grid = masks.astype(bool).reshape(-1, gt, gf)
  return np.repeat(np.repeat(grid, ph, axis=1), pw, axis=2)


def save_reconstruction_figure(path: str, images: np.ndarray, masks: np.ndarray,
                               reconstructions: np.ndarray, patch_size: tuple[int, int],
                               max_examples: int = 4, title: str | None = None) -> str:
  """Saves a PNG with one row per example: original / masked input / reconstruction.

  images, reconstructions: (N, Nt, Nf, C), time on axis 1 and frequency on axis 2; only channel 0
  is drawn. masks: (N, num_patches), True = masked, row-major over the (Nt//ph, Nf//pw) grid.
  Rows beyond the patch grid are never seen by the model and are cropped. The reconstruction panel
  shows the original in visible patches and the model output in masked ones, as in MAE. Each row
  shares one colour scale. Returns `path`.
  """
  images = np.asarray(images, dtype=np.float32)
  reconstructions = np.asarray(reconstructions, dtype=np.float32)
  masks = np.asarray(masks)
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"images must have shape (N>0, Nt, Nf, C), got {images.shape}")
  ph, pw = patch_size
  n, nt, nf, _ = images.shape
  if ph <= 0 or pw <= 0 or ph > nt or pw > nf:
    raise ValueError(f"patch_size {patch_size} does not fit images of {nt}x{nf}")
  grid_shape = (nt // ph, nf // pw)
  # The model output may cover the image or only its patch grid; both are accepted.
  t, f = grid_shape[0] * ph, grid_shape[1] * pw
  if (reconstructions.ndim != 4 or reconstructions.shape[0] != n
          or reconstructions.shape[1] < t or reconstructions.shape[2] < f):
    raise ValueError(f"reconstructions must have shape ({n}, >={t}, >={f}, C) like images "
                     f"{images.shape}, got {reconstructions.shape}")
  if masks.shape != (n, grid_shape[0] * grid_shape[1]):
    raise ValueError(f"masks must have shape ({n}, {grid_shape[0] * grid_shape[1]}) for images "
                     f"{images.shape} and patch_size {patch_size}, got {masks.shape}")
  if max_examples < 1:
    raise ValueError(f"max_examples must be >= 1, got {max_examples}")

  rows = min(n, max_examples)
  original = images[:rows, :t, :f, 0]
  pixel_mask = patch_mask_to_pixels(masks[:rows], grid_shape, patch_size)
  masked_input = np.where(pixel_mask, np.nan, original)
  pasted = np.where(pixel_mask, reconstructions[:rows, :t, :f, 0], original)

  fig = Figure(figsize=(11, 2.8 * rows + (0.4 if title else 0)), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(rows, 3, squeeze=False)
  for i in range(rows):
    finite = np.concatenate([original[i].ravel(), pasted[i].ravel()])
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    panels = [("original", original[i]),
              (f"masked input ({masks[i].astype(bool).mean():.0%} of patches)", masked_input[i]),
              ("reconstruction", pasted[i])]
    for ax, (name, panel) in zip(axes[i], panels):
      # Transposed so that time runs left to right and frequency bottom to top.
      im = ax.imshow(panel.T, origin="lower", aspect="auto", cmap=_CMAP, vmin=vmin, vmax=vmax,
                     interpolation="nearest")
      ax.set_title(f"example {i}: {name}" if name == "original" else name, fontsize=10)
      ax.set_xlabel("time frame")
    axes[i, 0].set_ylabel("frequency bin")
    fig.colorbar(im, ax=axes[i].tolist(), shrink=0.9, label="standardised value")
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  return path


def save_confusion_figure(path: str, matrix: np.ndarray, class_names, title: str | None = None
                          ) -> str:
  """Saves a PNG of a confusion matrix (rows = true class, columns = predicted class).

  Cells are coloured by the row-normalised fraction (recall for the diagonal), so that classes of
  different sizes read on one scale, and labelled with their raw counts and that fraction. The
  figure is (3.5 + 0.7 K) x (2.5 + 0.7 K) inches at 100 dpi, plus 0.4 inches with a title.
  Returns `path`.
  """
  matrix = np.asarray(matrix)
  k = len(class_names)
  if matrix.shape != (k, k) or k == 0:
    raise ValueError(f"matrix must have shape ({k}, {k}) for class_names {list(class_names)}, "
                     f"got {matrix.shape}")
  support = matrix.sum(axis=1, keepdims=True)
  fractions = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)

  fig = Figure(figsize=(3.5 + 0.7 * k, 2.5 + 0.7 * k + (0.4 if title else 0)),
               layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  im = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  for (i, j), count in np.ndenumerate(matrix):
    # White text on the dark end of the colour scale, black on the light end.
    ax.text(j, i, f"{int(count)}\n{fractions[i, j]:.0%}", ha="center", va="center",
            fontsize=8, color="white" if fractions[i, j] > 0.5 else "black")
  ticks = np.arange(k)
  ax.set_xticks(ticks, [str(n) for n in class_names], rotation=45, ha="right",
                rotation_mode="anchor")
  ax.set_yticks(ticks, [str(n) for n in class_names])
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  fig.colorbar(im, ax=ax, shrink=0.9, label="fraction of true class")
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def class_colours(num_classes: int) -> np.ndarray:
  """(K, 4) RGBA colour of each class id: the same id has the same colour in every figure."""
  if num_classes <= 10:
    return matplotlib.colormaps["tab10"](np.arange(num_classes))
  return matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, num_classes))


def save_segmentation_figure(path: str, spectrograms: np.ndarray, truth: np.ndarray | None,
                             prediction: np.ndarray, class_names, title: str | None = None,
                             max_examples: int = 4) -> str:
  """Saves a PNG with one row per example: spectrogram / true labels / predicted labels.

  spectrograms: (N, Nt, Nf) or (N, Nt, Nf, C), time on axis 1 and frequency on axis 2, drawn as
  given (channel 0). truth, prediction: integer class-id maps (N, Nt, Nf). truth may be None (an
  unlabelled recording): then the rows are spectrogram / prediction only. Class i is always drawn
  in `class_colours(K)[i]`, named in a legend. Each panel is 3.6 x 2.8 inches at 100 dpi, plus 1.6
  inches of width for the legend and 0.4 of height for a title. Returns `path`.
  """
  spectrograms = np.asarray(spectrograms, dtype=np.float32)
  if spectrograms.ndim == 4:
    spectrograms = spectrograms[..., 0]
  if spectrograms.ndim != 3 or spectrograms.shape[0] == 0:
    raise ValueError(f"spectrograms must have shape (N>0, Nt, Nf) or (N>0, Nt, Nf, C), "
                     f"got {spectrograms.shape}")
  k = len(class_names)
  maps = {"prediction": np.asarray(prediction)}
  if truth is not None:
    maps = {"truth": np.asarray(truth), **maps}
  for name, ids in maps.items():
    if ids.shape != spectrograms.shape or ids.dtype.kind not in "iu":
      raise ValueError(f"{name} must be integer class ids of shape {spectrograms.shape} like the "
                       f"spectrograms, got {ids.dtype} {ids.shape}")
    if ids.min() < 0 or ids.max() >= k:
      raise ValueError(f"{name} holds class ids outside [0, {k}) for class_names "
                       f"{list(class_names)}: min {ids.min()}, max {ids.max()}")
  if max_examples < 1:
    raise ValueError(f"max_examples must be >= 1, got {max_examples}")

  rows = min(len(spectrograms), max_examples)
  cols = 1 + len(maps)
  colours = class_colours(k)
  label_cmap = ListedColormap(colours)
  fig = Figure(figsize=(3.6 * cols + 1.6, 2.8 * rows + (0.4 if title else 0)),
               layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(rows, cols, squeeze=False)
  for i in range(rows):
    # Transposed so that time runs left to right and frequency bottom to top.
    axes[i, 0].imshow(spectrograms[i].T, origin="lower", aspect="auto", cmap=_CMAP,
                      interpolation="nearest")
    axes[i, 0].set_title(f"example {i}: spectrogram", fontsize=10)
    axes[i, 0].set_ylabel("frequency bin")
    for ax, (name, ids) in zip(axes[i, 1:], maps.items()):
      # vmin/vmax pin id c to colour c even when a map holds only some of the classes.
      ax.imshow(ids[i].T, origin="lower", aspect="auto", cmap=label_cmap, vmin=-0.5,
                vmax=k - 0.5, interpolation="nearest")
      ax.set_title(name, fontsize=10)
    for ax in axes[i]:
      ax.set_xlabel("time frame")
  handles = [Patch(facecolor=colours[c], edgecolor="black", label=str(n))
             for c, n in enumerate(class_names)]
  fig.legend(handles=handles, loc="outside right upper", title="class")
  if title:
    fig.suptitle(title)
  return _save(fig, path)
