"""An output folder that appears only when complete: written in a temporary sibling, renamed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from geopose_jax.errors import InputError


@contextlib.contextmanager
def staged_output(folder: str | os.PathLike):
  """Yields a temporary folder beside `folder`; renames it to `folder` on success.

  On any exception the temporary folder is removed and `folder` is left as it was (absent,
  or empty). An existing non-empty `folder` is refused so nothing is overwritten.
  """
  folder = os.path.abspath(os.fspath(folder))
  if os.path.isdir(folder) and os.listdir(folder):
    raise InputError(f"output folder {folder} exists and is not empty; choose a new "
                     f"folder or remove it")
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise InputError(f"output path {folder} is a file; expected a folder to create")
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.", suffix=".tmp", dir=parent)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.isdir(folder):
    os.rmdir(folder)
  os.replace(tmp, folder)
