"""Reconstruction figures for masked spectrogram modeling.

Drawn on a bare matplotlib Figure with the Agg canvas: no pyplot, so no global backend state is
touched and nothing needs a display.
"""
from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  return path
