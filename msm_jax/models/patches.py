"""The one patchify: spectrogram (B, Nt, Nf, C) <-> patch vectors (B, N, ph*pw*C).

Patches are taken in row-major order over the (Nt // ph, Nf // pw) grid and each patch vector is
laid out (ph, pw, C). Everything that talks about patches (embedding, masking, loss targets,
figures, segmentation logits) uses this order.
"""
from typing import Sequence


def grid_shape(input_hw: Sequence[int], patch_size: Sequence[int]) -> tuple[int, int]:
  """(rows, cols) of the patch grid; the input must be divisible by the patch."""
  (h, w), (ph, pw) = input_hw, patch_size
  if h % ph or w % pw:
    raise ValueError(
        f"input {h}x{w} is not divisible by patch {ph}x{pw}: choose config.input_shape and "
        "config.model.patch_size so that the patch divides both sides")
  return h // ph, w // pw


def patchify(images, patch_size: Sequence[int]):
  """(B, H, W, C) -> (B, (H/ph)*(W/pw), ph*pw*C)."""
  b, h, w, c = images.shape
  ph, pw = patch_size
  gh, gw = grid_shape((h, w), patch_size)
  x = images.reshape(b, gh, ph, gw, pw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, gh * gw, ph * pw * c)


def unpatchify(patches, patch_size: Sequence[int], grid: Sequence[int], channels: int):
  """(B, N, ph*pw*C) -> (B, gh*ph, gw*pw, C); the inverse of `patchify`."""
  b = patches.shape[0]
  (ph, pw), (gh, gw) = patch_size, grid
  x = patches.reshape(b, gh, gw, ph, pw, channels).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, gh * ph, gw * pw, channels)
