"""One run of the study: its config, its own workdir with run.json once finished, its record."""
import contextlib
import json
import os
import time

from absl import logging

from configs import finetune as finetune_configs
from configs import pretrain as pretrain_configs

# JAX settings of the persistent compilation cache, and the values the study runs them at.
_CACHE_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0,
                   "jax_persistent_cache_min_entry_size_bytes": 0}


def timed(workdir: str, run):
  """Runs `run()` unless `workdir` has a run.json; returns the stored record {wall_s, ...}."""
  record_path = os.path.join(workdir, "run.json")
  os.makedirs(workdir, exist_ok=True)
  if os.path.exists(record_path):
    with open(record_path) as f:
      return json.load(f)
  start = time.perf_counter()
  record = run() or {}
  record["wall_s"] = time.perf_counter() - start
  with open(record_path, "w") as f:
    json.dump(record, f, indent=2)
  return record


@contextlib.contextmanager
def compilation_cache(path: str):
  """Keeps every compiled program in `path` while the block runs, JAX's settings restored after.

  Runs that differ only in seed, label count or data run the same programs, and a cache hit skips
  XLA's compile: ~15 s of a mid-size finetuning run on 2 CPU cores.
  """
  import jax
  from jax.experimental.compilation_cache import compilation_cache as cache
  settings = dict(_CACHE_SETTINGS, jax_compilation_cache_dir=path)
  before = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  cache.reset_cache()  # JAX decides once whether it caches; this process may have decided 'no'
  try:
    yield
  finally:
    for name, value in before.items():
      jax.config.update(name, value)
    cache.reset_cache()


def _use_tfds(data, name: str, data_dir: str):
  data.update(source="tfds", name=name, data_dir=data_dir)


def pretrain_config(config, ratio: float, data_dir: str):
  c = pretrain_configs.get_config(config.size)
  c.update(config.pretrain.to_dict())
  c.update(input_shape=tuple(config.pretrain_shape), mask_ratio=float(ratio), seed=config.seed)
  _use_tfds(c.data, "radio_pretrain", data_dir)
  return c


def finetune_config(config, task: str, data_dir: str, *, recipe: str, init_from: str = "",
                    large=False, seed: int | None = None, examples: int = 0):
  """Finetuning `task` on the study's dataset in `data_dir` with the study's `recipe` (a config
  field: 'linear', 'paper_probe' or 'scratch'), evaluated on its test split. `examples` > 0
  trains on the first that many training examples only."""
  c = finetune_configs.get_config(f"{task}_{config.size}")
  c.update(config[recipe].to_dict())
  c.update(config.finetune[task].to_dict())
  c.update(input_shape=tuple(config.shapes[task]), init_from=init_from,
           seed=config.seed if seed is None else seed)
  if large:
    c.model.encoder = dict(config.large_encoder)
    c.model.encoder_name = "large"
  _use_tfds(c.data, finetune_configs.DATASET_OF[task], data_dir)
  c.data.update(split=f"train[:{examples}]" if examples else "train", eval_split="test",
                eval_examples=0)
  return c


def finetune_run(finetune, ft_config, run_dir: str, run: str, **fields) -> dict:
  """Finetunes (or reads run_dir's finished run); the record of run `run` with `fields` added."""
  task = "har" if ft_config.task == "classification" else "seg"
  logging.info("Study: %s (%s) in %s", run, task, run_dir)

  def train():
    _, metrics = finetune(ft_config, run_dir)
    return {"metrics": metrics}

  record = timed(run_dir, train)
  metrics = record["metrics"]
  seg = task == "seg"
  return {"task": task, "run": run, **fields, "mode": ft_config.mode,
          "encoder": ft_config.model.encoder_name,
          "score": metrics["mean_iou" if seg else "accuracy"],
          "metric": "mean IoU" if seg else "accuracy",
          "pixel_accuracy": metrics.get("pixel_accuracy"),
          "per_class_iou": metrics.get("per_class_iou"),
          "trainable_params": metrics["trainable_params"], "total_params": metrics["total_params"],
          "wall_s": record["wall_s"], "workdir": run_dir}


def pretrain_name(ratio: float) -> str:
  """The workdir of the pretraining at masking ratio `ratio`: pretrain_PCT."""
  return f"pretrain_{round(ratio * 100)}"


def run_name(task: str, recipe: str, ratio: float | None = None) -> str:
  """The workdir of a main-table run: TASK_scratch, or TASK_RECIPE_PCT for a probe of the encoder
  pretrained at masking ratio `ratio` (TASK_RECIPE_random without one)."""
  if recipe == "scratch":
    return f"{task}_scratch"
  return f"{task}_{recipe}_{'random' if ratio is None else round(ratio * 100)}"
