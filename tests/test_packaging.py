"""Accelerator readiness: msm-jax states ranges, not pins, so it installs beside a newer JAX; the
models and the training code do not load the CPU kernels (nor the JAX experimental API they use)
until a kernel is wanted on the CPU; the compute dtype follows the platform."""
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from configs import finetune, pretrain
from msm_jax import cpu_kernels
from msm_jax.models.build import resolve_dtype

ROOT = pathlib.Path(__file__).resolve().parents[1]


def requirements():
  return [Requirement(r) for r in importlib.metadata.requires("msm-jax")]


def test_requirements_are_ranges_that_admit_a_newer_jax():
  reqs = requirements()
  pinned = [str(r) for r in reqs if any(s.operator in ("==", "===") for s in r.specifier)]
  assert not pinned, f"exact pins belong in requirements/ci.txt, not setup.py: {pinned}"
  jax_req = next(r for r in reqs if r.name == "jax" and not r.marker)
  assert jax_req.specifier.contains("0.10.2") and jax_req.specifier.contains("0.11.0")


def test_the_ci_constraints_pin_every_direct_requirement():
  lines = (ROOT / "requirements" / "ci.txt").read_text().splitlines()
  pins = {Requirement(l).name: Requirement(l) for l in lines if l and not l.startswith("#")}
  assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in
             pins.values())
  for req in requirements():  # the core and every extra the tests install
    if req.marker is None or req.marker.evaluate({"extra": "test"}):
      assert req.name in pins, f"{req.name} has no exact version in requirements/ci.txt"
      assert req.specifier.contains(next(iter(pins[req.name].specifier)).version), req


def test_accelerator_extras_use_jax_own_extras():
  by_extra = {}
  for req in requirements():
    for extra in ("cuda", "cuda12", "tpu"):
      if req.marker is not None and req.marker.evaluate({"extra": extra}):
        by_extra[extra] = req
  assert {e: (r.name, sorted(r.extras)) for e, r in by_extra.items()} == {
      "cuda": ("jax", ["cuda13"]), "cuda12": ("jax", ["cuda12"]), "tpu": ("jax", ["tpu"])}


def _python(code: str, **env):
  """Runs code in a fresh interpreter (a clean sys.modules) and returns its last stdout line."""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.strip().splitlines()[-1]


LOADED = """
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.startswith("msm_jax.kernels")
                        or m in ("jax.experimental.custom_partitioning", "tensorflow"))))
"""


def test_importing_models_and_training_loads_no_kernels():
  modules = [f"msm_jax.models.{p.stem}" for p in (ROOT / "msm_jax/models").glob("*.py")]
  modules += [f"msm_jax.training.{p.stem}" for p in (ROOT / "msm_jax/training").glob("*.py")]
  imports = "".join(f"import {m}\n" for m in sorted(modules))
  assert json.loads(_python(imports + LOADED)) == []


TRAIN_STEP = """
import jax, numpy as np
from configs.pretrain import get_config
from msm_jax.training import loop
from msm_jax.training.optimizer import make_optimizer
from msm_jax.training.pretrain import MsmTask
from msm_jax.training.step import make_train_step
config = get_config("tiny")
task = MsmTask(config)
state = loop.create_train_state(task, make_optimizer(config, lambda c: 1e-3), jax.random.key(0))
batch = {"image": np.ones((2, 64, 64, 1), np.float32)}
jax.jit(make_train_step(task.loss_fn, lambda c: 1e-3))(state, batch, jax.random.key(1))
"""


def test_a_train_step_with_the_switch_off_loads_no_kernels():
  """Off, the models are plain Flax layers: what runs on an accelerator (where the switch is off
  by itself, tests/test_models.py and test_adamw.py check the choice per platform)."""
  assert json.loads(_python(TRAIN_STEP + LOADED, **{cpu_kernels.ENV: "0"})) == []


def test_a_train_step_with_the_switch_on_loads_the_kernels_and_nothing_of_tensorflow():
  loaded = json.loads(_python(TRAIN_STEP + LOADED, **{cpu_kernels.ENV: "1"}))
  assert "msm_jax.kernels.attention" in loaded and "tensorflow" not in loaded


def test_the_switch(monkeypatch):
  monkeypatch.delenv(cpu_kernels.ENV, raising=False)
  assert cpu_kernels.enabled() == cpu_kernels.cpu_has_avx512()  # the default, 'auto'
  monkeypatch.setenv(cpu_kernels.ENV, "auto")
  monkeypatch.setattr(cpu_kernels, "cpu_has_avx512", lambda: True)
  assert cpu_kernels.enabled()
  monkeypatch.setattr(cpu_kernels, "cpu_has_avx512", lambda: False)
  assert not cpu_kernels.enabled()
  monkeypatch.setenv(cpu_kernels.ENV, "1")
  assert cpu_kernels.enabled()
  with cpu_kernels.switched(False):
    assert not cpu_kernels.enabled() and not cpu_kernels.supports("gelu", None)
    with pytest.raises(RuntimeError, match="CPU kernels off"):
      cpu_kernels.kernel("gelu")
  monkeypatch.setenv(cpu_kernels.ENV, "0")
  assert not cpu_kernels.enabled()
  with cpu_kernels.switched(True):
    assert cpu_kernels.enabled()
  monkeypatch.setenv(cpu_kernels.ENV, "1")
  monkeypatch.setattr("jax.devices", lambda *a: [type("Tpu", (), {"platform": "tpu"})()])
  assert not cpu_kernels.enabled()  # never on an accelerator
  monkeypatch.setenv(cpu_kernels.ENV, "yes please")
  with pytest.raises(ValueError, match="MSM_JAX_CPU_KERNELS='yes please'"):
    cpu_kernels.enabled()


@pytest.mark.parametrize("variant", ["tiny", "vit_s", "maskspec_base"])
def test_compute_dtype_follows_the_platform(variant, monkeypatch):
  config = pretrain.get_config(variant)
  assert config.model.dtype == "auto"
  assert finetune.get_config(f"seg_{variant}").model.dtype == "auto"
  assert resolve_dtype(config.model.dtype) == "float32"  # these tests run on CPU
  monkeypatch.setattr("jax.default_backend", lambda: "gpu")
  assert resolve_dtype(config.model.dtype) == "bfloat16"
  assert resolve_dtype("float32") == "float32"
  with pytest.raises(ValueError, match="config.model.dtype='fp16'"):
    resolve_dtype("fp16")
