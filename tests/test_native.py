"""The on-demand build of msm_jax/kernels' C++ sources: cached per machine, and a clear fallback
(None plus one warning naming the cause) where it cannot be built."""
import logging
import os

import pytest

from msm_jax.kernels import native

# A source that compiles in seconds: the mechanics are the same for all (attention_cpu.cc: ~45 s).
SOURCE = "adamw_cpu.cc"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
  """An empty library cache, and native.load's memo cleared around the test."""
  monkeypatch.setenv("MSM_JAX_CACHE", str(tmp_path))
  native.load.cache_clear()
  yield tmp_path
  native.load.cache_clear()


@pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler on this machine")
def test_builds_once_then_loads_the_cached_library(fresh_cache, monkeypatch):
  library = native.load(SOURCE)
  assert library is not None and hasattr(library, "MsmAdamwUpdate")
  built = list(fresh_cache.glob("adamw_cpu-*.so"))
  assert len(built) == 1 and not list(fresh_cache.glob("tmp*"))

  def must_not_build(*args):
    raise AssertionError("rebuilt although the library is cached")

  monkeypatch.setattr(native, "build", must_not_build)
  native.load.cache_clear()
  assert native.load(SOURCE) is not None


def test_a_failing_compiler_falls_back_with_a_warning(fresh_cache, monkeypatch, caplog):
  monkeypatch.setenv("CXX", "false")  # exists everywhere, always fails
  with caplog.at_level(logging.WARNING):
    assert native.load(SOURCE) is None
  assert f"Could not build {SOURCE}" in caplog.text and "false" in caplog.text
  assert not os.listdir(fresh_cache)  # no half-written library left behind


def test_no_compiler_falls_back_with_a_warning(fresh_cache, monkeypatch, caplog):
  monkeypatch.delenv("CXX", raising=False)
  monkeypatch.setenv("PATH", str(fresh_cache))  # an empty directory
  assert native.compiler() is None
  with caplog.at_level(logging.WARNING):
    assert native.load(SOURCE) is None
  assert "No C++ compiler" in caplog.text and SOURCE in caplog.text


def test_the_cache_key_covers_source_headers_compiler_and_jaxlib(tmp_path):
  source = tmp_path / "k.cc"
  source.write_text("int a;")
  base = native.library_path(source, "c++", "/inc", "0.10.2")
  assert base.name.startswith("k-") and base.suffix == ".so"
  assert native.library_path(source, "clang++", "/inc", "0.10.2") != base
  assert native.library_path(source, "c++", "/inc", "0.11.0") != base
  source.write_text("int b;")
  changed = native.library_path(source, "c++", "/inc", "0.10.2")
  assert changed != base
  (tmp_path / "common.h").write_text("int c;")  # a header beside it, which it may include
  assert native.library_path(source, "c++", "/inc", "0.10.2") != changed


def test_a_kernel_call_without_its_library_says_so(fresh_cache, monkeypatch):
  monkeypatch.setenv("CXX", "false")  # a compiler that always fails
  targets = {"msm_test_only_target": "MsmAdamwUpdate"}  # a registration key of its own
  assert native.register(SOURCE, **targets) is False
  with pytest.raises(RuntimeError, match=f"{SOURCE} could not be built"):
    native.require(SOURCE, **targets)
