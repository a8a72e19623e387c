"""Metric writing: `metrics.jsonl` (one JSON object per logged step) and TensorBoard events.

Only the main process writes; the others get a writer that does nothing, so the loop can
call it unconditionally.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Mapping

import numpy as np


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` and to TensorBoard event files."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if not enabled:
      return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(logdir=str(workdir / "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    clean = {}
    for name, value in scalars.items():
      value = float(np.asarray(value))
      clean[name] = value if math.isfinite(value) else str(value)
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> (H, W, 3) uint8."""
    if not self.enabled:
      return
    for name, image in images.items():
      self._tb.add_image(name, np.asarray(image), step, dataformats="HWC")

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
