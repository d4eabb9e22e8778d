"""The one switch for msm_jax/kernels, the optional C++ kernels of the float32 CPU step.

The kernels (attention, LayerNorm, bias + GELU, the Dense gradient's transpose, AdamW's update)
make the paper's ViT-S train step ~1.3-1.5x faster on CPU and mean nothing on a GPU or TPU. They
use the XLA FFI and JAX experimental APIs (custom_partitioning, layouts), so the models and the
training code reach them only through this module, which imports `msm_jax.kernels.NAME` the
first time a kernel is asked for while JAX computes on the CPU. On an accelerator, or with the
switch off, the models are plain Flax layers and nothing under msm_jax/kernels is imported.

The switch: `MSM_JAX_CPU_KERNELS=auto` (the default) turns them on where they help, CPUs with
AVX-512, whose 16-float registers the kernels are written for; on an AVX2-only CPU (a 2-core AMD
EPYC) they made the ViT-S step 1.5-3x slower than XLA's formulas (docs/performance.md). `1`
forces them on, `0` off; `with cpu_kernels.switched(False):` sets it for a block of code. Both
are read when a function is traced: a function jitted before the switch moved keeps its compiled
form. Off, the same XLA formulas run with the same values.
"""
import contextlib
import functools
import importlib
import os
import re
from typing import Optional

import jax

ENV = "MSM_JAX_CPU_KERNELS"
_SETTINGS = {"auto": None, "1": True, "on": True, "true": True, "0": False, "off": False,
             "false": False}
_override: Optional[bool] = None


@functools.cache
def cpu_has_avx512() -> bool:
  try:
    with open("/proc/cpuinfo") as f:
      return re.search(r"\bavx512f\b", f.read()) is not None
  except OSError:  # not Linux: no such file; the kernels stay off unless forced
    return False


def _setting() -> Optional[bool]:
  value = os.environ.get(ENV, "auto").strip().lower()
  if value not in _SETTINGS:
    raise ValueError(f"{ENV}={value!r}: choose auto (the default), 1 or 0")
  return _SETTINGS[value]


def enabled() -> bool:
  """Whether the kernels may be used now: JAX computes on the CPU and the switch is on (by
  default: the CPU has AVX-512)."""
  on = _override if _override is not None else _setting()
  if on is None:
    on = cpu_has_avx512()
  return on and jax.devices()[0].platform == "cpu"


@contextlib.contextmanager
def switched(on: bool):
  """The switch set to `on` inside the block (tests, notebooks), whatever the environment says."""
  global _override
  previous, _override = _override, on
  try:
    yield
  finally:
    _override = previous


def kernel(name: str):
  """The module msm_jax.kernels.NAME (imported on first use); only where `enabled()`."""
  if not enabled():
    raise RuntimeError(f"msm_jax.kernels.{name} asked for with the CPU kernels off")
  return importlib.import_module(f"msm_jax.kernels.{name}")


def supports(name: str, *args) -> bool:
  """Whether kernel NAME runs here and takes these arguments (its own `supports`: dtype, shapes,
  and whether the machine's C++ compiler could build it)."""
  return enabled() and kernel(name).supports(*args)
