"""The study's tables (results.md), data (results.json) and plots."""
import json
import os


def _table(rows, header):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def results_markdown(results: dict) -> str:
  parts = [f"# MSM study ({results['variant']})", "",
           f"Total wall time {results['total_wall_s'] / 60:.1f} min (dataset build "
           f"{results['data_build_s'] / 60:.1f} min, reused on reruns).", ""]
  for task, title in (("seg", "Segmentation (noise / LTE / NR)"), ("har", "Activity sensing (CSI)")):
    seg = task == "seg"
    rows = [(r["run"], r["encoder"], r["mode"], f"{r['score']:.4f}",
             *([f"{r['pixel_accuracy']:.4f}"] if seg else []),
             f"{r['trainable_params']:,}", f"{r['total_params']:,}", f"{r['wall_s']:.0f}")
            for r in results["finetune"] if r["task"] == task]
    header = ["run", "encoder", "mode", "mean IoU" if seg else "accuracy",
              *(["pixel acc."] if seg else []), "trainable params", "params", "train s"]
    parts += [f"## {title}", "", _table(rows, header), ""]
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
  fig = Figure(figsize=(11, 3.8))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 3)
  for ax, task in zip(axes[:2], ("seg", "har")):
    runs = [r for r in results["finetune"] if r["task"] == task]
    ax.bar(range(len(runs)), [r["score"] for r in runs], color="tab:blue")
    ax.set_xticks(range(len(runs)), [r["run"].replace(" from ", "\n") for r in runs],
                  fontsize=7, rotation=30)
    ax.set_title(f"{task}: {runs[0]['metric']}" if runs else task)
    ax.set_ylim(0, 1)
  for name, curve in results["reconstruction"].items():
    axes[2].plot(list(curve), list(curve.values()), marker=".", label=name)
  axes[2].set_xlabel("test masking ratio")
  axes[2].set_ylabel("reconstruction accuracy")
  axes[2].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "results.png"), dpi=100)
