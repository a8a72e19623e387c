"""SURREAL `<sequence>_c%04d_info.mat` files (MATLAB v5): SMPL parameters per frame.

Each file holds "pose" (72, T) axis-angle and "shape" (10, T) (one beta per clip, repeated),
besides "gender", "zrot", "joints2D", "joints3D" and "camLoc", which the prior does not use.
The release is laid out as cmu/{train,val,test}/run{0,1,2}/<sequence>/...; the split is read
from the path.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import scipy.io

SPLITS = {"train": "train", "val": "validation", "test": "test"}


def find_info_files(root: str | os.PathLike) -> list[pathlib.Path]:
  """Every *_info.mat under `root`, sorted; FileNotFoundError if there is none."""
  root = pathlib.Path(root)
  files = sorted(root.rglob("*_info.mat"))
  if not files:
    raise FileNotFoundError(
        f"no SURREAL *_info.mat files under {root}; put the release's cmu/ folder (or any "
        "folder of *_info.mat files) in the manual folder (--manual_dir)")
  return files


def split_of(path: pathlib.Path, root: pathlib.Path) -> str:
  """'train', 'validation' or 'test' from the first path part naming one; else 'train'."""
  for part in path.relative_to(root).parts[:-1]:
    if part in SPLITS:
      return SPLITS[part]
  return "train"


def read_info(path: str | os.PathLike, frame_step: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """-> theta (N, 72) and beta (N, 10) float32, every `frame_step`-th frame."""
  try:
    data = scipy.io.loadmat(os.fspath(path), variable_names=("pose", "shape"))
  except (ValueError, OSError, NotImplementedError) as e:
    raise ValueError(f"cannot read SURREAL info file {path}: {e}") from e
  for key, rows in (("pose", 72), ("shape", 10)):
    if key not in data:
      raise ValueError(f"SURREAL info file {path} has no {key!r} variable")
    if data[key].ndim != 2 or data[key].shape[0] != rows:
      raise ValueError(f"SURREAL info file {path}: {key!r} has shape {data[key].shape}, "
                       f"expected ({rows}, T)")
  pose, shape = data["pose"].T, data["shape"].T
  if len(pose) != len(shape):
    raise ValueError(f"SURREAL info file {path}: {len(pose)} poses but {len(shape)} shapes")
  keep = slice(0, None, frame_step)
  return pose[keep].astype(np.float32), shape[keep].astype(np.float32)
