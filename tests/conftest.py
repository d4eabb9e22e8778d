"""Test setup: 8 simulated CPU devices (set before JAX is first imported), a shared XLA
compilation cache, and no network."""
import atexit
import gc
import os
import shutil
import socket
import sys
import tempfile

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The C++ CPU kernels on whatever the CPU (by default only AVX-512 ones use them), so that the
# code paths that call them are tested everywhere; tests/test_packaging.py checks the default.
os.environ.setdefault("MSM_JAX_CPU_KERNELS", "1")
# TensorFlow (data pipeline only) must stay quiet and never take an accelerator.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One compilation cache for the session and the CLI subprocesses it starts: most tests build
# the same tiny networks again (new closures, identical programs), and XLA compilation, not
# running them, is most of the suite's time.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="msm_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

# Pools of generated examples (config.data.num_examples) go to a temporary cache, not ~/.cache.
if "MSM_JAX_CACHE" not in os.environ:
  _pools = tempfile.mkdtemp(prefix="msm_jax_test_pools_")
  atexit.register(shutil.rmtree, _pools, ignore_errors=True)
  os.environ["MSM_JAX_CACHE"] = _pools


@pytest.fixture(scope="module", autouse=True)
def no_network():
  """Fails any test module that tries to open a network connection: nothing may download at run
  time (tensorflow-datasets, for one, probes the network unless kept offline)."""
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access is forbidden in tests")

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "getaddrinfo", refuse)
    yield
  assert not attempts, f"network access attempted: {attempts}"


def pytest_collection_modifyitems(items):
  """The study's module fixture is the suite's longest single piece: run its file first, so that a
  parallel run (`-n 2 --dist loadfile`, as .ci/run) does not end waiting for it alone."""
  items.sort(key=lambda item: item.path.name != "test_study.py")


def pytest_sessionfinish(session):
  """Frees the session's compiled programs while a worker still counts as busy. pytest-xdist's
  controller shuts a worker down once it reports the session finished and SIGINTs it if it has
  not exited 5 s later; after a full run the worker's last garbage collection (JAX's gc callback
  releasing hundreds of executables) took longer than that on a loaded machine, and every run
  ended with a KeyboardInterrupt traceback. Here, before xdist reports the worker finished
  (its hook wraps this one), that work is done while the controller waits."""
  if "jax" in sys.modules:
    sys.modules["jax"].clear_caches()
  gc.collect()
