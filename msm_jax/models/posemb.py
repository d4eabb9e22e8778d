"""Fixed 2-D sine-cosine position embeddings, built for the actual patch grid."""
import numpy as np


def sincos_2d(grid: tuple[int, int], width: int, temperature: float = 10_000.0) -> np.ndarray:
  """(rows*cols, width) float32: half the channels encode the row, half the column.

  Built with numpy so it is a compile-time constant; a model on a new input size (finetuning at
  another grid) simply gets the embedding of its own grid.
  """
  if width % 4:
    raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {width}")
  rows, cols = grid
  y, x = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64),
                     indexing="ij")
  omega = 1.0 / temperature**(np.arange(width // 4, dtype=np.float64) / (width // 4))
  y = y.reshape(-1, 1) * omega
  x = x.reshape(-1, 1) * omega
  return np.concatenate([np.sin(y), np.cos(y), np.sin(x), np.cos(x)], axis=1).astype(np.float32)
