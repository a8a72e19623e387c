"""What every benchmark shares: timing, the device it ran on, and JSON written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time
from typing import Callable

import jax

from geopose_jax import host_memory


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds per call: each timed call's wall time, and this process's CPU time per call
  (on a shared machine, how much of it the process had)."""
  all_s: tuple[float, ...]
  cpu_s: float

  @property
  def mean_s(self) -> float:
    return statistics.fmean(self.all_s)

  @property
  def median_s(self) -> float:
    return statistics.median(self.all_s)

  def as_dict(self, prefix: str) -> dict:
    return {f"{prefix}_s": round(self.mean_s, 4), f"{prefix}_s_median": round(self.median_s, 4),
            f"{prefix}_s_all": [round(t, 4) for t in self.all_s]}


def time_calls(fn: Callable[[], object], warmup: int, calls: int) -> Timing:
  """Times `calls` calls of `fn()`, which must block, after `warmup` untimed ones."""
  for _ in range(warmup):
    fn()
  times = []
  cpu_start = time.process_time()
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return Timing(tuple(times), (time.process_time() - cpu_start) / calls)


def device_facts() -> dict:
  """The machine a number was measured on: device, platform, host CPUs, load, versions."""
  device = jax.devices()[0]
  return {
      "device": str(device.device_kind), "platform": device.platform,
      "num_devices": jax.device_count(), "host_cpus": os.cpu_count(),
      "machine": platform.machine(), "jax_version": jax.__version__,
      "load_average_1min": round(os.getloadavg()[0], 2),
      "cpu": _cpu_model(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "keep_freed_memory": host_memory.applied, "one_malloc_arena": host_memory.single_arena,
  }


def _cpu_model() -> str:
  """The host CPU's model name and widest vector extension (Linux), e.g. 'AMD EPYC, avx2'."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor()
  name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
               if line.startswith("model name")), platform.processor())
  flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                if line.startswith("flags")), [])
  vector = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
  return f"{name}, {vector}"


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
