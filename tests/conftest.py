"""Test configuration: four fake CPU devices, so sharding code runs as on a real mesh.

Datasets go to a fresh temporary folder: no test reads or writes the user's data folder,
and a test that forgot to build its own tiny data fails slowly here rather than passing
on a developer's machine only.
"""

import atexit
import os
import shutil
import tempfile

# Must be set before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
from geopose_jax import host_memory  # noqa: E402
from geopose_jax import xla_flags  # noqa: E402

host_memory.keep_freed_memory()  # as launch.py does
xla_flags.apply("nvs")  # as launch.py sets it for the convolutional tasks, the slowest tests
os.environ["GEOPOSE_DATA_DIR"] = tempfile.mkdtemp(prefix="geopose_test_data_")
atexit.register(shutil.rmtree, os.environ["GEOPOSE_DATA_DIR"], ignore_errors=True)
# One XLA compilation cache for the session, in a fresh folder (so nothing carries over from
# an earlier session): tests that build the same tiny networks, and the runs a test launches
# as subprocesses, compile each identical step once.
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="geopose_test_jit_cache_")
atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
import pytest  # noqa: E402

import data_prep  # noqa: E402,F401  (registers the dataset builders, as launch.py does)


@pytest.fixture(scope="session")
def four_devices():
  devices = jax.devices()
  assert len(devices) == 4, f"expected 4 fake CPU devices, got {len(devices)}"
  return devices
