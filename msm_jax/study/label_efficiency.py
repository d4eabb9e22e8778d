"""The label-efficiency curve: the downstream metric vs the number of labelled training examples
(the first N of the train split) for the paper probe of an MSM encoder, the same probe of a random
encoder and the network trained from scratch, each over several seeds."""
import os

import numpy as np

from msm_jax.study.runs import finetune_config, finetune_run, pretrain_name, run_name

# (arm, its slug in workdir names, recipe, whether the MSM checkpoint initialises it)
ARMS = (("MSM paper probe", "msm", "paper_probe", True),
        ("random-init paper probe", "random", "paper_probe", False),
        ("scratch", "scratch", "scratch", False))


def label_efficiency_runs(finetune, config, workdir: str, data_dir: str) -> list[dict]:
  """Every (task, arm, label count, seed) run of config.label_efficiency, each in its own workdir
  under WORKDIR/label_efficiency. A label count at or above the train split's size trains on the
  whole split, and with the study's seed that is the main table's run (the same recipe), which
  is read from its workdir instead of being trained again."""
  le = config.label_efficiency
  ratio = le.mask_ratio
  pretrained = os.path.join(workdir, pretrain_name(ratio))
  records = []
  for task in le.tasks:
    train_size = config.examples[task]
    for arm, slug, recipe, from_msm in ARMS:
      for count in le.label_counts:
        whole = count >= train_size
        for seed in le.seeds:
          if whole and seed == config.seed:
            run_dir = os.path.join(workdir, run_name(task, recipe, ratio if from_msm else None))
          else:
            run_dir = os.path.join(workdir, "label_efficiency", f"{task}_{slug}_n{count}_s{seed}")
          ft_config = finetune_config(config, task, data_dir, recipe=recipe, seed=seed,
                                      init_from=pretrained if from_msm else "",
                                      examples=0 if whole else count)
          if not whole:
            ft_config.figure_examples = 0  # dozens of runs: their numbers, not their pictures
          records.append(finetune_run(finetune, ft_config, run_dir, arm,
                                      examples=min(count, train_size), seed=seed))
  return records


def summarise(records: list[dict]) -> list[dict]:
  """Per (task, arm, examples), in the order first met: the mean score over seeds, its sample
  standard deviation (0 for one seed), min and max."""
  groups = {}
  for r in records:
    groups.setdefault((r["task"], r["run"], r["examples"]), []).append(r["score"])
  return [{"task": task, "arm": arm, "examples": n, "seeds": len(scores),
           "mean": float(np.mean(scores)),
           "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
           "min": float(min(scores)), "max": float(max(scores))}
          for (task, arm, n), scores in groups.items()]
