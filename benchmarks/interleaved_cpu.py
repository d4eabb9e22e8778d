"""msm-jax against the PyTorch MAE reference on the paper's ViT-S train step, timed interleaved.

On a shared VM the speed of the same program drifts by up to 2x within minutes, so separate
benchmark runs minutes apart compare the machine, not the code. Here each contender is a
long-lived process that compiles/warms up once and then waits; every round asks each in turn to
run `--steps` steps and report seconds per step, so the contenders of one round are timed seconds
apart. The summary gives, per contender, the median samples/s and the median over rounds of its
speed relative to PyTorch's in the same round.

Contenders: msm-jax as configured by default (steps_per_call=0, automatic: 4 steps per call on
CPU), msm-jax with one step per call, msm-jax by default but with the C++ kernels (attention,
LayerNorm) switched off (MSM_JAX_NATIVE_KERNELS=0), and PyTorch (run by --torch_python, the venv described in
pytorch_mae_reference.py):
  python benchmarks/interleaved_cpu.py --torch_python=/tmp/torchvenv/bin/python --rounds=8
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
CONTENDERS = {  # name: (config.steps_per_call, MSM_JAX_NATIVE_KERNELS)
    "msm-jax default (4 steps per call)": (0, "1"),
    "msm-jax, 1 step per call": (1, "1"),
    "msm-jax default, no C++ kernels": (0, "0"),
}
PYTORCH = "pytorch"


def serve(run_steps):
  """Worker loop: 'ready', then for each stdin line N, run N steps and print seconds per step."""
  print("ready", flush=True)
  for line in sys.stdin:
    count = int(line)
    start = time.perf_counter()
    run_steps(count)
    print((time.perf_counter() - start) / count, flush=True)


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
  serve(run_steps)


def torch_worker():
  sys.path.insert(0, str(HERE))
  from pytorch_mae_reference import build_train_step  # pylint: disable=g-import-not-at-top
  _, train_step = build_train_step(BATCH)
  for _ in range(2):
    train_step()
  serve(lambda count: [train_step() for _ in range(count)])


def start(name, command, env):
  process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **env}, cwd=HERE.parent)
  if process.stdout.readline().strip() != "ready":
    raise RuntimeError(f"{name} worker did not start: {' '.join(command)}")
  return process


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch_python", help="python of the PyTorch venv (required)")
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--steps", type=int, default=4, help="per contender per round")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == PYTORCH:
    return torch_worker()
  if args.worker:
    return jax_worker(CONTENDERS[args.worker][0])
  if not args.torch_python:
    parser.error("--torch_python is required: the python of a venv with torch and transformers")

  script = str(Path(__file__).resolve())
  processes = {PYTORCH: start(PYTORCH, [args.torch_python, script, f"--worker={PYTORCH}"], {})}
  for name, (_, native) in CONTENDERS.items():
    print(f"starting {name}", file=sys.stderr, flush=True)
    processes[name] = start(name, [sys.executable, script, f"--worker={name}"],
                            {"MSM_JAX_NATIVE_KERNELS": native})
  seconds = {name: [] for name in processes}
  for round_ in range(args.rounds):
    for name, process in processes.items():
      process.stdin.write(f"{args.steps}\n")
      process.stdin.flush()
      seconds[name].append(float(process.stdout.readline()))
    print(f"round {round_}: " + ", ".join(f"{n} {BATCH / s[-1]:.2f}" for n, s in seconds.items()),
          file=sys.stderr, flush=True)
  for process in processes.values():
    process.stdin.close()
    process.wait()
  summary = {name: {
      "samples_per_sec": BATCH / statistics.median(s),
      "speed_vs_pytorch": statistics.median(t / m for t, m in zip(seconds[PYTORCH], s)),
      "speed_vs_pytorch_range": [min(t / m for t, m in zip(seconds[PYTORCH], s)),
                                 max(t / m for t, m in zip(seconds[PYTORCH], s))],
  } for name, s in seconds.items()}
  print(json.dumps({"batch_size": BATCH, "rounds": args.rounds, "steps": args.steps, **summary}))


if __name__ == "__main__":
  main()
