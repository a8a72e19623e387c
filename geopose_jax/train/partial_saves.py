"""The temporary folders that unfinished checkpoint saves leave behind: found and removed.

No JAX and no Orbax here, on purpose: when a second Ctrl-C abandons a save, the save's
threads may still be writing its temporary folder and would rename it to a checkpoint once
they finish, so removing the folder under them could leave a partial checkpoint behind.
launch.py therefore replaces its process with this file run as a script
(`python partial_saves.py CHECKPOINT_DIR`): replacing a process ends all its threads, and
the small program that takes its place removes the folder and exits with status 130.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

TEMPORARY_MARK = ".orbax-checkpoint-tmp"


def remove_temporary_folders(directory: str | os.PathLike) -> list[pathlib.Path]:
  """Deletes the `*.orbax-checkpoint-tmp*` folders of an interrupted save; returns them."""
  directory = pathlib.Path(directory)
  removed = []
  if directory.is_dir():
    for path in directory.iterdir():
      if TEMPORARY_MARK in path.name:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
  return removed


if __name__ == "__main__":
  remove_temporary_folders(sys.argv[1])
  sys.exit(130)  # 128 + SIGINT: what the interrupted run would have returned
