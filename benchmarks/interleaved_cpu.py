"""msm-jax against the PyTorch MAE reference on the paper's ViT-S train step, timed interleaved.

On a shared VM the speed of the same program drifts by up to 2x within minutes, so separate
benchmark runs minutes apart compare the machine, not the code. Here each contender is a
long-lived process that compiles/warms up once and then waits; every round asks each in turn to
run `--steps` steps and report seconds per step, so the contenders of one round are timed seconds
apart. The summary gives, per contender, the median samples/s, the median over rounds of its speed
relative to PyTorch's in the same round, and the median over rounds of its fraction of the peak:
analytic step FLOPs / time / the fp32 matmul rate (what launch.benchmark calls the peak)
sampled by one more process right after that round's contenders.

Contenders: msm-jax with the C++ kernels (attention, LayerNorm, GELU, AdamW, transpose) forced
on (MSM_JAX_CPU_KERNELS=1; by default they are on only on AVX-512 CPUs) and steps_per_call=0
(automatic: 4 steps per call on CPU), the same with one step per call, msm-jax with the kernels
off (MSM_JAX_CPU_KERNELS=0), and PyTorch (run by
--torch_python, the venv described in pytorch_mae_reference.py):
  python benchmarks/interleaved_cpu.py --torch_python=/tmp/torchvenv/bin/python --rounds=8
With --compare_with=DIR, one more contender runs the first from another checkout (e.g.
`git worktree add /tmp/before HEAD~1`), to A/B a change on this VM:
  python benchmarks/interleaved_cpu.py --torch_python=... --compare_with=/tmp/before --rounds=16
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH = 16
HERE = Path(__file__).resolve().parent
CONTENDERS = {  # name: (config.steps_per_call, MSM_JAX_CPU_KERNELS)
    "msm-jax, C++ kernels on (4 steps per call)": (0, "1"),
    "msm-jax, C++ kernels on, 1 step per call": (1, "1"),
    "msm-jax, C++ kernels off (4 steps per call)": (0, "0"),
}
CHECKOUT = "msm-jax, --compare_with checkout"  # (0, "1"), from another directory
PYTORCH = "pytorch"
PEAK = "peak"  # not a contender: samples the matmul rate each round
PEAK_SAMPLES = 5  # per round


def serve(measure):
  """Worker loop: 'ready', then for each stdin line N, print measure(N)."""
  print("ready", flush=True)
  for line in sys.stdin:
    print(measure(int(line)), flush=True)


def seconds_per_step(run_steps):
  def measure(count):
    start = time.perf_counter()
    run_steps(count)
    return (time.perf_counter() - start) / count
  return measure


def peak_worker():
  """The fp32 matmul rate that launch.benchmark calls the peak: N samples, their median."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from msm_jax.training import benchmark  # pylint: disable=g-import-not-at-top
  sample = benchmark.matmul_rate(jnp.float32, benchmark.default_peak_size())
  serve(lambda count: float(np.median([sample() for _ in range(count)])))


def step_flops() -> float:
  """Analytic FLOPs of one ViT-S train step of BATCH samples, as launch.benchmark counts them."""
  from configs.pretrain import get_config  # pylint: disable=g-import-not-at-top
  from msm_jax.training.benchmark import train_step_flops  # pylint: disable=g-import-not-at-top
  from msm_jax.training.pretrain import MsmTask  # pylint: disable=g-import-not-at-top
  return train_step_flops(MsmTask(get_config("vit_s")), BATCH)


def jax_worker(steps_per_call: int):
  import jax  # pylint: disable=g-import-not-at-top
  from configs.pretrain import get_config  # pylint: disable=g-import-not-at-top
  from msm_jax.training.benchmark import compiled_step  # pylint: disable=g-import-not-at-top
  config = get_config("vit_s")
  config.model.dtype = "float32"
  config.steps_per_call = steps_per_call
  step, state, batch, rng, _, _ = compiled_step(config, BATCH)
  steps_per_call = config.steps_per_call  # 0 resolved by compiled_step
  holder = {"state": state}

  def run_steps(count):
    if count % steps_per_call:
      raise ValueError(f"{count} steps is not a multiple of steps_per_call={steps_per_call}")
    for _ in range(count // steps_per_call):
      holder["state"], metrics = step(holder["state"], batch, rng)
    jax.block_until_ready(metrics)

  run_steps(2 * steps_per_call)  # compile, warm up
  serve(seconds_per_step(run_steps))


def torch_worker():
  sys.path.insert(0, str(HERE))
  from pytorch_mae_reference import build_train_step  # pylint: disable=g-import-not-at-top
  _, train_step = build_train_step(BATCH)
  for _ in range(2):
    train_step()
  serve(seconds_per_step(lambda count: [train_step() for _ in range(count)]))


def start(name, command, env):
  process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **env}, cwd=HERE.parent)
  if process.stdout.readline().strip() != "ready":
    raise RuntimeError(f"{name} worker did not start: {' '.join(command)}")
  return process


def ask(process, count: int, parse=float):
  """The worker's answer to `count`, parsed."""
  process.stdin.write(f"{count}\n")
  process.stdin.flush()
  return parse(process.stdout.readline())


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch_python", help="python of the PyTorch venv (required)")
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--steps", type=int, default=4, help="per contender per round")
  parser.add_argument("--compare_with", help="a checkout of msm-jax (e.g. a git worktree of "
                      "another commit) whose default step is one more contender")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == PYTORCH:
    return torch_worker()
  if args.worker == PEAK:
    return peak_worker()
  if args.worker == CHECKOUT:
    return jax_worker(0)
  if args.worker:
    return jax_worker(CONTENDERS[args.worker][0])
  if not args.torch_python:
    parser.error("--torch_python is required: the python of a venv with torch and transformers")

  script = str(Path(__file__).resolve())
  processes = {PYTORCH: start(PYTORCH, [args.torch_python, script, f"--worker={PYTORCH}"], {})}
  for name, (_, native) in CONTENDERS.items():
    print(f"starting {name}", file=sys.stderr, flush=True)
    processes[name] = start(name, [sys.executable, script, f"--worker={name}"],
                            {"MSM_JAX_CPU_KERNELS": native})
  if args.compare_with:  # its msm_jax and configs come first on the worker's path
    processes[CHECKOUT] = start(CHECKOUT, [sys.executable, script, f"--worker={CHECKOUT}"],
                                {"PYTHONPATH": str(Path(args.compare_with).resolve())})
  peak = start(PEAK, [sys.executable, script, f"--worker={PEAK}"], {})
  seconds = {name: [] for name in processes}
  peaks = []
  for round_ in range(args.rounds):
    for name, process in processes.items():
      seconds[name].append(ask(process, args.steps))
    peaks.append(ask(peak, PEAK_SAMPLES))
    print(f"round {round_}: " + ", ".join(f"{n} {BATCH / s[-1]:.2f}" for n, s in seconds.items())
          + f"; matmul {peaks[-1] / 1e9:.0f} GFLOP/s", file=sys.stderr, flush=True)
  for process in [*processes.values(), peak]:
    process.stdin.close()
    process.wait()
  flops = step_flops()

  def median_and_range(values):
    values = list(values)
    return statistics.median(values), [min(values), max(values)]
  summary = {}
  for name, s in seconds.items():
    speed, speed_range = median_and_range(t / m for t, m in zip(seconds[PYTORCH], s))
    fraction, fraction_range = median_and_range(flops / m / p for m, p in zip(s, peaks))
    summary[name] = {"samples_per_sec": BATCH / statistics.median(s),
                     "speed_vs_pytorch": speed, "speed_vs_pytorch_range": speed_range,
                     "fraction_of_peak": fraction, "fraction_of_peak_range": fraction_range}
  print(json.dumps({"batch_size": BATCH, "rounds": args.rounds, "steps": args.steps,
                    "step_flops": flops, "peak_flops_per_sec": statistics.median(peaks),
                    **summary}))


if __name__ == "__main__":
  main()
