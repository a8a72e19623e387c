"""The XLA CPU settings launch.py gives a task before JAX starts."""

import os
import subprocess
import sys

import pytest

from geopose_jax import xla_flags


@pytest.fixture
def measured_jaxlib(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: xla_flags.MEASURED_JAXLIB[0])


def test_convolutional_tasks_get_the_setting_and_temporal_ones_do_not(measured_jaxlib):
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  assert xla_flags.apply("nvs", env) == [f"{xla_flags.YNN_FUSION_FLAG}="]
  assert env["XLA_FLAGS"] == (f"--xla_force_host_platform_device_count=4 "
                              f"{xla_flags.YNN_FUSION_FLAG}=")
  assert xla_flags.apply("nvs", env) == []  # once only
  for task in ("rie", "lifter", "toy"):
    env = {}
    assert xla_flags.apply(task, env) == [] and "XLA_FLAGS" not in env


def test_the_users_own_value_is_kept(measured_jaxlib):
  env = {"XLA_FLAGS": f"{xla_flags.YNN_FUSION_FLAG}=dot"}
  assert xla_flags.apply("smpl", env) == []
  assert env["XLA_FLAGS"] == f"{xla_flags.YNN_FUSION_FLAG}=dot"


def test_nothing_is_set_on_a_jaxlib_it_was_not_measured_on(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: (99, 0))
  env = {}
  assert xla_flags.apply("nvs", env) == [] and env == {}


def test_this_jaxlib_accepts_what_is_set():
  """XLA aborts the process on a flag it does not know: run a convolution gradient with it."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  code = ("from geopose_jax import xla_flags; import os; xla_flags.apply('nvs');"
          "import jax, jax.numpy as jnp;"
          "f = lambda k: jax.lax.conv(jnp.ones((2, 3, 8, 8)), k, (1, 1), 'SAME').sum();"
          "g = jax.grad(f)(jnp.ones((4, 3, 3, 3)));"
          "print(os.environ.get('XLA_FLAGS', ''), float(g[0, 0, 1, 1]))")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  flags, value = out.stdout.split()[:-1], float(out.stdout.split()[-1])
  assert value == 2 * 8 * 8  # every output sees the centre tap: batch 2 x 8 x 8 positions
  assert flags == xla_flags.flags_for("nvs")
