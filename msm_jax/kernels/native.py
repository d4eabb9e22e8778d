"""Builds the C++ kernels beside this file into a shared library, once per machine, and loads it.

Nothing is downloaded and no build step is added to `pip install`: the first process that needs
a kernel compiles it with the machine's C++ compiler (`$CXX`, else `c++`, `g++` or `clang++`)
against the XLA FFI headers that jaxlib ships, for the machine's own CPU (-march=native), in
5-10 s per source. The library is cached under `$MSM_JAX_CACHE` (default `~/.cache/msm_jax`),
keyed by the source and the headers beside it, the flags, jaxlib's version and the CPU, so later
processes only load it, and a home directory shared by different machines gets one library per
CPU model.

Without a compiler `load` returns None and says why once; callers then use their pure-XLA
formula, which gives the same values, only slower. Whether the kernels are wanted at all is
msm_jax.cpu_kernels' switch, consulted before anything here is imported.
"""
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from absl import logging

SOURCE_DIR = Path(__file__).parent
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno",
         "-w")


class BuildError(RuntimeError):
  pass


def cache_dir() -> Path:
  return Path(os.environ.get("MSM_JAX_CACHE", Path.home() / ".cache" / "msm_jax"))


def compiler() -> Optional[str]:
  for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
    if path := shutil.which(name):
      return path
  return None


def _cpu_identity() -> str:
  """What -march=native depends on: the CPU model and its feature flags."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return "\n".join(sorted({l for l in lines if l.startswith(("model name", "flags", "Features"))}))
  except OSError:
    return platform.processor() or platform.machine()


def library_path(source: Path, cxx: str, include_dir: str, jaxlib_version: str) -> Path:
  headers = [h.read_text() for h in sorted(source.parent.glob("*.h"))]  # what it may include
  key = hashlib.sha256("\0".join([
      source.read_text(), *headers, cxx, " ".join(FLAGS), include_dir, jaxlib_version, platform.machine(),
      _cpu_identity()]).encode()).hexdigest()[:16]
  return cache_dir() / f"{source.stem}-{key}.so"


def build(source: Path, cxx: str, include_dir: str, target: Path) -> None:
  """Compiles source into target; a concurrent build of the same library is harmless (each
  writes its own temporary file and renames it into place)."""
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
  os.close(fd)
  command = [cxx, *FLAGS, f"-I{include_dir}", f"-I{source.parent}", str(source), "-o", tmp]
  try:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
      raise BuildError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@functools.cache
def load(source_name: str) -> Optional[ctypes.CDLL]:
  """The compiled library of SOURCE_DIR/source_name, or None (with one warning) if it cannot be
  built here."""
  cxx = compiler()
  if cxx is None:
    logging.warning("No C++ compiler ($CXX, c++, g++ or clang++) found: %s is not built and the "
                    "slower XLA formula is used instead. Install g++ or clang++ to speed up "
                    "training on CPU.", source_name)
    return None
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  source = SOURCE_DIR / source_name
  target = library_path(source, cxx, jax.ffi.include_dir(), jaxlib.__version__)
  if not target.exists():
    logging.info("Compiling %s for this CPU (once per machine, 5-10 s) into %s", source_name, target)
    try:
      build(source, cxx, jax.ffi.include_dir(), target)
    except (BuildError, OSError) as e:
      logging.warning("Could not build %s, using the slower XLA formula instead: %s",
                      source_name, e)
      return None
  return ctypes.CDLL(str(target))


@functools.cache
def register(source_name: str, **targets: str) -> bool:
  """Builds (or loads) SOURCE_DIR/source_name and registers its FFI handlers with XLA:CPU under
  the given target names (target name -> exported handler symbol). False if it cannot be built
  here; `load` has said why."""
  import jax  # pylint: disable=g-import-not-at-top
  library = load(source_name)  # ctypes never unloads it: the handlers stay valid
  if library is None:
    return False
  for name, symbol in targets.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
  return True


def require(source_name: str, **targets: str) -> None:
  """`register`, raising where the library cannot be built here: for a kernel's call, which
  the models only reach after checking that it is registered (else they use their XLA formula)."""
  if not register(source_name, **targets):
    raise RuntimeError(f"msm_jax's CPU kernel {source_name} could not be built on this machine "
                       "(see the log); the models use their XLA formulas instead")
