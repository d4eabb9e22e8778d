"""The one switch for msm_jax/kernels, the optional C++ kernels of the float32 CPU step.

The kernels (attention, LayerNorm, bias + GELU, the Dense gradient's transpose, AdamW's update)
make the paper's ViT-S train step ~1.3-1.5x faster on CPU and mean nothing on a GPU or TPU. They
use the XLA FFI and JAX experimental APIs (custom_partitioning, layouts), so the models and the
training code reach them only through this module, which imports `msm_jax.kernels.NAME` the
first time a kernel is asked for while JAX computes on the CPU. On an accelerator, or with the
switch off, the models are plain Flax layers and nothing under msm_jax/kernels is imported.

The switch: on by default where the kernels run (the CPU backend); `MSM_JAX_CPU_KERNELS=0` in the
environment turns it off for a process, `with cpu_kernels.switched(False):` for a block of code
(both read when a function is traced: a function jitted before the switch moved keeps its
compiled form). Off, the same XLA formulas run with the same values, only slower.
"""
import contextlib
import importlib
import os
from typing import Optional

import jax

ENV = "MSM_JAX_CPU_KERNELS"
_OFF = ("0", "false", "off", "no")
_override: Optional[bool] = None


def enabled() -> bool:
  """Whether the kernels may be used now: JAX computes on the CPU and the switch is on."""
  on = _override if _override is not None else os.environ.get(ENV, "1").lower() not in _OFF
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
