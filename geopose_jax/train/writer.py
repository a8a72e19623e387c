"""Metric writing: `metrics.jsonl` (one JSON object per logged step) and TensorBoard events.

Only the main process writes; the others get a writer that does nothing, so the loop can
call it unconditionally. Each JSON line goes to the file in one `write` of the whole line
followed by fsync, so a crash or a full disk never leaves half a line behind; a torn last
line left by an older writer is cut off when the file is opened again.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from geopose_jax.errors import GeoposeError


class DiskFullError(GeoposeError, OSError):
  """The workdir's disk is full (or over quota); the message says how much was written."""


def disk_full_message(workdir: str | os.PathLike, written: str) -> str:
  return (f"the disk holding {workdir} is full ({written}); free space there (or move the "
          "run to another disk) and relaunch with the same --workdir to resume from the last "
          "checkpoint")


def is_disk_full(error: BaseException) -> bool:
  return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _write(fd: int, data: bytes) -> int:
  return os.write(fd, data)


def repair_jsonl(path: str | os.PathLike) -> int:
  """Cuts a torn (newline-less) last line off a JSON-lines file; returns bytes removed."""
  path = pathlib.Path(path)
  if not path.is_file():
    return 0
  data = path.read_bytes()
  if not data or data.endswith(b"\n"):
    return 0
  keep = data.rfind(b"\n") + 1
  with open(path, "r+b") as f:
    f.truncate(keep)
  return len(data) - keep


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` and to TensorBoard event files."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.enabled = enabled
    self.workdir = pathlib.Path(workdir)
    self.lines_written = 0
    self._tb = None
    self._fd = None
    if not enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    path = self.workdir / "metrics.jsonl"
    removed = repair_jsonl(path)
    if removed:
      print(f"Removed a torn last line ({removed} bytes) from {path}.", flush=True)
    self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(logdir=str(self.workdir / "tensorboard"))

  def _append_line(self, line: str) -> None:
    data = line.encode("utf-8")
    try:
      written = _write(self._fd, data)
      if written != len(data):  # A short write means the disk filled up mid-line.
        os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        raise OSError(errno.ENOSPC, "short write")
      os.fsync(self._fd)
    except OSError as e:
      if is_disk_full(e):
        raise DiskFullError(disk_full_message(
            self.workdir, f"{self.lines_written} metric lines written to metrics.jsonl by this "
            "launch")) from None
      raise
    self.lines_written += 1

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    clean = {}
    for name, value in scalars.items():
      value = float(np.asarray(value))
      clean[name] = value if math.isfinite(value) else str(value)
      self._tb.add_scalar(name, value, step)
    self._append_line(json.dumps({"step": int(step), **clean}) + "\n")

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> (H, W, 3) uint8."""
    if not self.enabled:
      return
    for name, image in images.items():
      self._tb.add_image(name, np.asarray(image), step, dataformats="HWC")

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()

  def close(self) -> None:
    if self.enabled and self._fd is not None:
      self._tb.close()
      os.close(self._fd)
      self._fd = None
