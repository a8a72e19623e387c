"""Test configuration: four fake CPU devices, so sharding code runs as on a real mesh."""

import os

# Must be set before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def four_devices():
  devices = jax.devices()
  assert len(devices) == 4, f"expected 4 fake CPU devices, got {len(devices)}"
  return devices
