"""Segmentation of carrier configurations held out of training: a radio_segmentation dataset of
config.held_out.generator (lte_nr_holdout: its test split holds only configurations its train
split never shows), the MSM paper probe and the network from scratch trained on its train split
and scored per class on its test split."""
import os

from msm_jax.study.runs import finetune_config, finetune_run, pretrain_name, run_name

RECIPES = (("MSM paper probe", "paper_probe"), ("scratch", "scratch"))


def build_dataset(config, held_out_dir: str) -> str:
  """Builds (or reuses) the held-out radio_segmentation in `held_out_dir`; returns its name."""
  from msm_jax.data import radio_segmentation
  n = config.examples
  radio_segmentation.build(held_out_dir, num_examples=n.seg, shape=config.shapes.seg,
                           seed=config.seed, generator=config.held_out.generator,
                           num_eval_examples=n.eval)
  return radio_segmentation.NAME


def held_out_runs(finetune, config, workdir: str, held_out_dir: str) -> list[dict]:
  """The runs of RECIPES on the held-out dataset, in WORKDIR/held_out; the probe starts from the
  checkpoint pretrained at config.label_efficiency.mask_ratio."""
  ratio = config.label_efficiency.mask_ratio
  pretrained = os.path.join(workdir, pretrain_name(ratio))
  records = []
  for run, recipe in RECIPES:
    from_msm = recipe != "scratch"
    ft_config = finetune_config(config, "seg", held_out_dir, recipe=recipe,
                                init_from=pretrained if from_msm else "")
    name = run_name("seg", recipe, ratio if from_msm else None)
    run_dir = os.path.join(workdir, "held_out", name)
    records.append(finetune_run(finetune, ft_config, run_dir, run,
                                mask_ratio=ratio if from_msm else None))
  return records
