"""Log-power + standardisation: the one formula shared by the numpy and the tf.data pipelines.

Spectrograms are stored as linear power. Models see 10*log10(power + EPS) standardised with a
dataset-wide mean and std (stats.json next to a built dataset, or computed by the synthetic source).
Both pipelines call `normalize`, passing their own natural-log function, so they cannot drift apart.

config.data.normalization names the statistics: 'dataset' (the default, above) or 'paper', the
radio foundation model paper's fixed pipeline, which its released weights were trained on
(launch.import_checkpoint): 10*log10(power + 1e-12), then (x + 120) / 119.5, then
Normalize(0.451, 0.043). That is the same affine map of the log power, so it is written as
statistics too (PAPER_STATS), with its own power floor `eps`; the statistics travel with every
finetuned checkpoint, so inference normalises as training did.
"""
import json
import math
import os

import numpy as np

# Power floor added before the log: keeps empty bins finite. Spectrograms sit on a unit-power
# noise floor, 100 dB above it, so the floor never changes real data.
EPS = 1e-10
STATS_FILENAME = "stats.json"
_DB_PER_NEPER = 10.0 / math.log(10.0)  # 10*log10(x) == _DB_PER_NEPER * ln(x)

# The paper's (x_db + 120) / 119.5 then (y - 0.451) / 0.043, as one (x_db - mean) / std.
PAPER_STATS = {"mean": 0.451 * 119.5 - 120.0, "std": 0.043 * 119.5, "eps": 1e-12}
NORMALIZATIONS = ("dataset", "paper")


def log_power_db(power, log=np.log, eps: float = EPS):
  """10*log10(power + eps); `log` is the natural log of the caller's array module (np.log,
  tf.math.log)."""
  return _DB_PER_NEPER * log(power + eps)


def standardize(power, mean: float, std: float, log=np.log, eps: float = EPS):
  """(log_power_db(power) - mean) / std, in the dtype of `power` (float32 stays float32)."""
  return (log_power_db(power, log, eps) - mean) / std


def normalize(power, stats: dict, log=np.log):
  """The model input of linear `power` under `stats` (a dataset's, or PAPER_STATS)."""
  return standardize(power, stats["mean"], stats["std"], log, stats.get("eps", EPS))


def nonfinite(values, what: str = "values", offset: int = 0) -> str | None:
  """None if every value is finite, else 'N of the M `what` are NaN or infinite, the first at
  index i' (i counted from `offset`, for a slice of a longer array; a tuple for N-d arrays). The
  file readers refuse such input: one NaN or inf makes the spectrogram holding it NaN, and with it
  every statistic and loss taken over the dataset."""
  bad = ~np.isfinite(values)
  if not bad.any():
    return None
  first = tuple(int(i) for i in np.argwhere(bad)[0])
  first = (first[0] + offset,) + first[1:]
  return (f"{int(bad.sum())} of the {bad.size} {what} are NaN or infinite, the first at index "
          f"{first[0] if len(first) == 1 else first}")


def normalization_stats(name: str, dataset_stats: dict) -> dict:
  """The statistics config.data.normalization=`name` normalises with."""
  if name == "dataset":
    return dataset_stats
  if name == "paper":
    return dict(PAPER_STATS)
  raise ValueError(f"config.data.normalization={name!r} must be one of {NORMALIZATIONS}.")


def compute_stats(powers) -> dict:
  """Exact mean/std of log_power_db over every value of an iterable of power arrays.

  Streams with Chan's pairwise update in float64, so arbitrarily many arrays never lose precision.
  """
  count, mean, m2 = 0, 0.0, 0.0
  for power in powers:
    db = log_power_db(np.asarray(power, np.float64))
    if db.size == 0:
      continue
    part_mean = float(db.mean())
    part_m2 = float(np.square(db - part_mean).sum())
    total = count + db.size
    delta = part_mean - mean
    mean += delta * db.size / total
    m2 += part_m2 + delta * delta * count * db.size / total
    count = total
  if count == 0:
    raise ValueError("compute_stats: no power values were given.")
  std = math.sqrt(m2 / count)
  if not std > 0:
    raise ValueError(f"compute_stats: the log-power std is {std}; the spectrograms are constant.")
  return {"mean": mean, "std": std}


def write_stats(path: str, stats: dict) -> None:
  """Writes `stats` (at least 'mean' and 'std') as JSON to `path`."""
  _check_stats(stats, path)
  with open(path, "w") as f:
    json.dump(stats, f, indent=2, sort_keys=True)


def read_stats(path: str) -> dict:
  """Reads a stats.json written by `write_stats`; clear errors for a missing or malformed file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Normalisation statistics {path} do not exist.")
  with open(path) as f:
    stats = json.load(f)
  _check_stats(stats, path)
  return stats


def _check_stats(stats, path):
  if not isinstance(stats, dict) or not {"mean", "std"} <= stats.keys():
    raise ValueError(f"{path}: normalisation statistics need the fields 'mean' and 'std', got {stats!r}.")
  if not (math.isfinite(stats["mean"]) and math.isfinite(stats["std"]) and stats["std"] > 0):
    raise ValueError(f"{path}: 'mean' must be finite and 'std' finite and > 0, got {stats!r}.")
