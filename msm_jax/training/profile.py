"""Where a compiled step's time goes: a jax.profiler trace joined to the HLO's source names."""
import collections
import glob
import gzip
import json
import re
import tempfile

import jax

# Flax module names that say which part of the network an HLO instruction came from.
MODULES = ("attn", "mlp", "norm", "patch_embed", "embed", "pred")


def _source_names(compiled_text: str) -> dict:
  """HLO instruction name -> the op_name metadata (the JAX/Flax call path) it was lowered from."""
  names = {}
  for line in compiled_text.splitlines():
    match = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{op_name="([^"]+)"', line)
    if match:
      names[match.group(1)] = match.group(2)
  return names


def _module_of(op_name: str) -> str:
  part = "decoder" if "/decoder/" in op_name else "encoder" if "/encoder/" in op_name else "other"
  module = next((m for m in MODULES if f"/{m}" in op_name), "rest")
  backward = "transpose(" in op_name  # reverse-mode ops are named transpose(jvp(...))
  return f"{part}/{module}" + ("/backward" if backward else "")


def time_by_module(jitted_step, state, batch, rng, steps_per_call: int = 1,
                   calls: int = 2) -> dict:
  """Milliseconds per step spent in each (encoder|decoder|other)/module[/backward] group,
  summed over devices (and including time ops spend waiting on collectives).

  `jitted_step(state, batch, rng) -> (state, metrics)` runs `steps_per_call` steps and donates
  its state, so it is threaded through `calls` calls.
  """
  names = _source_names(jitted_step.lower(state, batch, rng).compile().as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(calls):
      state, metrics = jitted_step(state, batch, rng)
    jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    (trace_file,) = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
    with gzip.open(trace_file) as f:
      events = json.load(f)["traceEvents"]
  totals = collections.Counter()
  for event in events:
    if event.get("ph") == "X" and event.get("name") in names:
      totals[_module_of(names[event["name"]])] += event["dur"] / 1e3 / (calls * steps_per_call)
  return {k: round(v, 1) for k, v in totals.most_common()}
