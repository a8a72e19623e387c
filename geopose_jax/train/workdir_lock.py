"""One training run per workdir: a lock file holding the owner's host and pid.

A second launch on a workdir in use stops with one line naming the owner. A lock left by a
process that died (same host, pid no longer running) is stale and taken over; a lock from
another host cannot be checked from here, so the message says how to clear it by hand.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time

from geopose_jax.errors import GeoposeError

LOCK_NAME = "train.lock"


class WorkdirLockedError(GeoposeError, RuntimeError):
  """Another process trains in this workdir."""


def _pid_running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Exists, owned by someone else.
    return True
  return True


def _read(path: pathlib.Path) -> dict | None:
  try:
    owner = json.loads(path.read_text())
    return owner if isinstance(owner, dict) and "pid" in owner and "host" in owner else None
  except (OSError, ValueError):
    return None


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds `workdir/train.lock` for the duration."""

  def __init__(self, workdir: str | os.PathLike):
    self.path = pathlib.Path(workdir) / LOCK_NAME
    self.host = socket.gethostname()
    self.pid = os.getpid()
    self._held = False

  def acquire(self) -> "WorkdirLock":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"host": self.host, "pid": self.pid, "since": time.time()})
    # Written whole under a private name, then linked: the lock file is never seen half-written.
    tmp = self.path.with_name(f".{LOCK_NAME}.{self.host}.{self.pid}")
    tmp.write_text(record)
    try:
      for _ in range(2):
        try:
          os.link(tmp, self.path)
          self._held = True
          return self
        except FileExistsError:
          pass
        owner = _read(self.path)
        if owner is None:
          raise WorkdirLockedError(
              f"{self.path} exists but cannot be read; if no run uses {self.path.parent}, "
              "delete that file and launch again")
        if owner["host"] == self.host and not _pid_running(int(owner["pid"])):
          print(f"Taking over {self.path}: its process {owner['pid']} is no longer running.",
                flush=True)
          self.path.unlink(missing_ok=True)
          continue
        raise WorkdirLockedError(
            f"{self.path.parent} is in use by process {owner['pid']} on host {owner['host']} "
            f"({self.path}); wait for it to finish, use another --workdir, or delete that file "
            "if the process is gone")
      raise WorkdirLockedError(f"could not take {self.path}; another launch raced for it")
    finally:
      tmp.unlink(missing_ok=True)

  def release(self) -> None:
    if not self._held:
      return
    owner = _read(self.path)
    if owner is not None and owner["pid"] == self.pid and owner["host"] == self.host:
      self.path.unlink(missing_ok=True)
    self._held = False

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
    return False
