"""How every launch/ command ends: a user error prints one line and exits 1; a bug keeps its
traceback.

A user error is an exception of the kinds msm-jax raises for bad input (a file that is missing,
corrupt or mislabelled, an impossible flag or config, a dataset not built, a missing optional
package, a diverged run), raised by msm-jax's own code. It may arrive wrapped by a library that
called back into that code (tensorflow-datasets building a dataset from our readers): the chain
of causes is searched for it. Anything else, or any exception raised inside a library, is a bug
or needs its traceback; MSM_JAX_TRACEBACK=1 shows the traceback of user errors too.
"""
import os
import sys
from typing import Callable, Optional

from absl import app

_OURS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
              for d in ("msm_jax", "configs", "launch"))
USER_ERRORS = (ValueError, OSError, ImportError, FloatingPointError)


def _raised_by_us(error: BaseException) -> bool:
  tb = error.__traceback__
  if tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OURS)


def user_error(error: BaseException) -> Optional[BaseException]:
  """The user error in `error`'s chain of causes, if there is one."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, USER_ERRORS) and _raised_by_us(error):
      return error
    error = error.__cause__ or error.__context__
  return None


def run(main: Callable, name: Optional[str] = None):
  """absl's app.run(main), with user errors ending as `NAME: error: MESSAGE` and exit status 1."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # python -m launch.NAME
  name = name or (spec.name if spec else os.path.basename(sys.argv[0]))

  def guarded(argv):
    try:
      return main(argv)
    except Exception as error:  # pylint: disable=broad-except
      found = user_error(error)
      if found is None or os.environ.get("MSM_JAX_TRACEBACK"):
        raise
      message = " ".join(str(found).split()) or type(found).__name__
      print(f"{name}: error: {message}", file=sys.stderr)
      sys.exit(1)
  app.run(guarded)
