"""The C++ attention kernel alone (msm_jax/kernels/attention_cpu.cc), forward and forward +
backward, on the paper's ViT-S layers; with --compare_with=DIR against another checkout's
kernel, timed interleaved.

A whole train step moves by +-10-20 % between rounds on a shared VM, more than a kernel change
is worth to the step; the kernel alone, interleaved with its predecessor, resolves a few percent.
Each contender is a worker process (the same one, on another checkout's msm_jax via PYTHONPATH)
that compiles once and then times `--calls` calls per round:
  git worktree add /tmp/before HEAD~1
  python benchmarks/attention_cpu.py --compare_with=/tmp/before --rounds=20
Prints one JSON line: per layer shape and contender, median milliseconds per call, and the
median over rounds of this checkout's time over the other's.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from interleaved_cpu import ask, serve, start

SHAPES = {  # name: (batch, tokens, heads, head width), the paper's ViT-S at batch 16
    "decoder layer": (16, 197, 16, 16),
    "encoder layer": (16, 50, 8, 64),
}
OPS = ("forward", "forward+backward")


def worker():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from msm_jax.kernels import attention  # pylint: disable=g-import-not-at-top
  calls = []
  for b, n, h, d in SHAPES.values():
    qkv, bias, d_out = (jax.random.normal(key, shape) for key, shape in zip(
        jax.random.split(jax.random.key(0), 3), [(b, n, 3, h, d), (3, h, d), (b, n, h, d)]))
    if not attention.supports(qkv):
      raise RuntimeError("the attention kernel could not be built here (see the log)")
    def loss(qkv, bias, d_out=d_out):
      return jnp.sum(attention.self_attention(qkv, bias) * d_out)
    for fn in (jax.jit(attention.self_attention), jax.jit(jax.grad(loss, (0, 1)))):
      jax.block_until_ready(fn(qkv, bias))  # compile
      calls.append(lambda fn=fn, qkv=qkv, bias=bias: fn(qkv, bias))

  def measure(count):
    times = []
    for call in calls:
      start_time = time.perf_counter()
      for _ in range(count):
        jax.block_until_ready(call())
      times.append((time.perf_counter() - start_time) / count)
    return json.dumps(times)
  serve(measure)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--calls", type=int, default=5, help="per operation per round")
  parser.add_argument("--compare_with", help="a checkout of msm-jax (e.g. a git worktree of "
                      "another commit) whose kernel is the other contender")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker()
  command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
  workers = {"this checkout": start("this checkout", command, {})}
  if args.compare_with:
    workers["compare_with"] = start("compare_with", command,
                                    {"PYTHONPATH": str(Path(args.compare_with).resolve())})
  labels = [f"{shape} {op}" for shape in SHAPES for op in OPS]
  seconds = {name: [] for name in workers}  # per round, per label
  for round_ in range(args.rounds):
    names = list(workers) if round_ % 2 == 0 else list(workers)[::-1]  # alternate who goes first
    for name in names:
      seconds[name].append(ask(workers[name], args.calls, json.loads))
    print(f"round {round_}: " + "; ".join(
        f"{name} " + ", ".join(f"{t * 1e3:.1f}" for t in s[-1]) for name, s in seconds.items()),
          file=sys.stderr, flush=True)
  for process in workers.values():
    process.stdin.close()
    process.wait()
  summary = {}
  for i, label in enumerate(labels):
    entry = {f"{name} ms": 1e3 * statistics.median(s[i] for s in rounds)
             for name, rounds in seconds.items()}
    if args.compare_with:
      entry["time ratio (median over rounds)"] = statistics.median(
          a[i] / b[i] for a, b in zip(seconds["this checkout"], seconds["compare_with"]))
    summary[label] = entry
  print(json.dumps({"rounds": args.rounds, "calls": args.calls, "shapes": SHAPES, **summary}))


if __name__ == "__main__":
  main()
