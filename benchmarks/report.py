"""What every benchmark prints and writes: the device it ran on, and JSON written atomically."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import tempfile

import jax


def device_facts() -> dict:
  """The machine a number was measured on: device, platform, host CPUs, load, versions."""
  device = jax.devices()[0]
  return {
      "device": str(device.device_kind), "platform": device.platform,
      "num_devices": jax.device_count(), "host_cpus": os.cpu_count(),
      "machine": platform.machine(), "jax_version": jax.__version__,
      "load_average_1min": round(os.getloadavg()[0], 2),
  }


def emit(result: dict, out: str = "") -> dict:
  """Prints `result` as JSON and, when `out` is given, writes it there (temp file + rename)."""
  print(json.dumps(result, indent=2))
  if out:
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
      json.dump(result, f, indent=2)
    os.replace(tmp, path)
  return result
