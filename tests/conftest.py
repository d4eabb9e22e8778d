"""Test setup: 8 simulated CPU devices (set before JAX is first imported), and no network."""
import os
import socket

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow (data pipeline only) must stay quiet and never take an accelerator.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
