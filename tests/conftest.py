"""Test setup: 8 simulated CPU devices, set before JAX is first imported."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow (data pipeline only) must stay quiet and never take an accelerator.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
