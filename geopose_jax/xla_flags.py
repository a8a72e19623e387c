"""XLA CPU settings that make a task's training step faster, set before JAX starts.

XLA's CPU backend (jaxlib 0.10) hands some fusions to YNNPACK. For convolutions that path is
slow in the backward pass: the kernel gradient of a 3x3 convolution of a (16, 128, 128, 64)
input to 32 channels takes 2.0 s with it and 0.27 s with Eigen, so the NVS training step
(ResNet-50 encoder, convolutional decoder, ResNet-18 perceptual loss; batch 16, 128x128)
runs at 20.8 s with the default and 7.96 s with no YNNPACK fusion (0.77 -> 2.01 images/s on
2 AVX2 cores; keeping YNNPACK for matrix products only gives 8.91 s). The temporal models
are matrix products and gain nothing (RIE stage 3: 2.53 s default, 2.55 s matrix products
only, 2.72 s none), so only the convolutional tasks get the setting.

`apply(task)` must run before JAX creates its CPU client (the first device query): launch.py
calls it first thing, the benchmarks before building anything. A flag the user already put
in XLA_FLAGS is left as it is, and nothing is set for a jaxlib the setting was not measured
on (XLA refuses flags it does not know, and this one is experimental).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
CONVOLUTIONAL_TASKS = ("nvs", "nvs_pose", "smpl")
# jaxlib releases the flag was measured on (major, minor).
MEASURED_JAXLIB = ((0, 10),)


def _jaxlib_version() -> tuple[int, int] | None:
  try:
    major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
    return int(major), int(minor)
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return None


def flags_for(task: str) -> list[str]:
  """The XLA flags `apply` adds for `task` on this jaxlib (before the user's own)."""
  if task in CONVOLUTIONAL_TASKS and _jaxlib_version() in MEASURED_JAXLIB:
    return [f"{YNN_FUSION_FLAG}="]
  return []


def apply(task: str, environ: MutableMapping[str, str] = os.environ) -> list[str]:
  """Appends `flags_for(task)` to environ['XLA_FLAGS'], skipping any flag already named
  there; returns the flags added."""
  current = environ.get("XLA_FLAGS", "")
  named = {part.split("=", 1)[0] for part in current.split()}
  added = [flag for flag in flags_for(task) if flag.split("=", 1)[0] not in named]
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added
