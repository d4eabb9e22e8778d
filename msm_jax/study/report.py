"""The study's tables (results.md), data (results.json) and plots (results.png)."""
import json
import os

TASK_TITLES = (("seg", "Segmentation (noise / LTE / NR)"), ("har", "Activity sensing (CSI)"))


def _table(rows, header):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def _number(value) -> str:
  return "-" if value is None else f"{value:.4f}"


def _classes(results) -> list[str]:
  """The segmentation class names, in the order the runs report them."""
  for r in (*results["finetune"], *results["held_out"]):
    if r["per_class_iou"]:
      return list(r["per_class_iou"])
  return []


def _finetune_table(results, task) -> str:
  seg = task == "seg"
  classes = _classes(results) if seg else []
  rows = [(r["run"], r["encoder"], r["mode"], _number(r["score"]),
           *([_number(r["pixel_accuracy"])] + [_number(r["per_class_iou"][c]) for c in classes]
             if seg else []),
           f"{r['trainable_params']:,}", f"{r['total_params']:,}", f"{r['wall_s']:.0f}")
          for r in results["finetune"] if r["task"] == task]
  header = ["run", "encoder", "mode", "mean IoU" if seg else "accuracy",
            *(["pixel acc."] + [f"IoU {c}" for c in classes] if seg else []),
            "trainable params", "params", "train s"]
  return _table(rows, header)


def _label_efficiency_table(results, task) -> str:
  points = [p for p in results["label_efficiency"]["summary"] if p["task"] == task]
  arms = list(dict.fromkeys(p["arm"] for p in points))
  counts = sorted({p["examples"] for p in points})
  cell = {(p["arm"], p["examples"]): f"{p['mean']:.4f} ± {p['std']:.4f}" for p in points}
  rows = [(n, *(cell.get((arm, n), "-") for arm in arms)) for n in counts]
  return _table(rows, ["labelled examples", *arms])


def results_markdown(results: dict) -> str:
  parts = [f"# MSM study ({results['variant']})", "",
           f"Total wall time {results['total_wall_s'] / 60:.1f} min (dataset build "
           f"{results['data_build_s'] / 60:.1f} min, reused on reruns).", ""]
  for task, title in TASK_TITLES:
    parts += [f"## {title}", "", _finetune_table(results, task), ""]
  curve = results["label_efficiency"]["summary"]
  if curve:
    parts += ["## Label efficiency", "",
              "Score on the test split vs the number of labelled training examples (the first N "
              "of the train split): mean ± sample standard deviation over "
              f"{max(p['seeds'] for p in curve)} seeds; min and max per point in results.json.",
              ""]
  for task, title in TASK_TITLES:
    if any(p["task"] == task for p in curve):
      parts += [f"### {title}", "", _label_efficiency_table(results, task), ""]
  classes = _classes(results)
  held = [(r["run"], _number(r["score"]), *(_number(r["per_class_iou"][c]) for c in classes),
           _number(r["pixel_accuracy"]), f"{r['wall_s']:.0f}") for r in results["held_out"]]
  parts += ["## Segmentation of held-out carrier configurations", "",
            "Trained on configurations the test split never shows and tested only on the "
            "held-out ones.", "",
            _table(held, ["run", "mean IoU", *(f"IoU {c}" for c in classes), "pixel acc.",
                          "train s"]), ""]
  pre = [(name, r["mask_ratio"], f"{r['final']['loss']:.4f}", f"{r['wall_s']:.0f}")
         for name, r in results["pretrain"].items()]
  parts += ["## Pretraining", "", _table(pre, ["run", "mask ratio", "final loss", "train s"]), ""]
  curves = results["reconstruction"]
  ratios = list(next(iter(curves.values())))
  rows = [[f"{float(r):.2f}"] + [f"{curves[name][r]:.4f}" for name in curves] for r in ratios]
  parts += ["## Reconstruction accuracy vs test masking ratio", "",
            _table(rows, ["test ratio"] + list(curves)), ""]
  return "\n".join(parts)


def write_report(results: dict, config, workdir: str) -> None:
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"config": config.to_dict(), **results}, f, indent=2, default=str)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(results_markdown(results))
  _plots(results, workdir)


def _plots(results, workdir):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(13, 8))
  FigureCanvasAgg(fig)
  (seg, har, recon), (seg_curve, har_curve, held) = fig.subplots(2, 3)
  for ax, task in ((seg, "seg"), (har, "har")):
    runs = [r for r in results["finetune"] if r["task"] == task]
    ax.bar(range(len(runs)), [r["score"] for r in runs], color="tab:blue")
    ax.set_xticks(range(len(runs)), [r["run"].replace(" from ", "\n") for r in runs],
                  fontsize=6, rotation=40, ha="right")
    ax.set_title(f"{task}: {runs[0]['metric']}" if runs else task)
    ax.set_ylim(0, 1)
  for name, curve in results["reconstruction"].items():
    recon.plot([float(r) for r in curve], list(curve.values()), marker=".", label=name)
  recon.set_xlabel("test masking ratio")
  recon.set_ylabel("reconstruction accuracy")
  recon.legend(fontsize=7)
  for ax, task in ((seg_curve, "seg"), (har_curve, "har")):
    points = [p for p in results["label_efficiency"]["summary"] if p["task"] == task]
    for arm in dict.fromkeys(p["arm"] for p in points):
      line = [p for p in points if p["arm"] == arm]
      ax.errorbar([p["examples"] for p in line], [p["mean"] for p in line],
                  yerr=[p["std"] for p in line], marker="o", capsize=3, label=arm)
    ax.set_xscale("log")
    counts = sorted({p["examples"] for p in points})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("labelled training examples")
    ax.set_title(f"{task}: label efficiency ({'mean IoU' if task == 'seg' else 'accuracy'})")
    if points:
      ax.legend(fontsize=7)
    else:  # config.label_efficiency.tasks left this task out
      ax.text(0.5, 0.5, "not run (config.label_efficiency.tasks)", ha="center",
              transform=ax.transAxes)
  classes = _classes(results)
  width = 0.8 / max(1, len(results["held_out"]))
  for i, r in enumerate(results["held_out"]):
    held.bar([c + i * width for c in range(len(classes))],
             [r["per_class_iou"][name] or 0.0 for name in classes], width, label=r["run"])
  held.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], classes)
  held.set_ylim(0, 1)
  held.set_title("held-out configurations: IoU per class")
  held.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "results.png"), dpi=100)
