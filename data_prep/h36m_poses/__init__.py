"""The `h36m_poses` dataset: Human3.6M-layout 2D/3D pose sequences (see the builder module)."""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_prep.h36m_poses.h36m_poses_dataset_builder import Builder
from data_prep.h36m_poses.h36m_poses_dataset_builder import H36mPosesConfig
from data_prep.h36m_poses.h36m_poses_dataset_builder import NAME
from data_prep.h36m_poses.h36m_poses_dataset_builder import npz_config


def make_builder(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 npz_3d: str = "", npz_2d: str = "") -> Builder:
  """The builder for `name` ('h36m_poses' or 'h36m_poses/<config>') or for given npz files.

  Args:
    name: the dataset name, optionally with a builder config ('h36m_poses/synthetic_noisy').
    data_dir: where datasets are built and read.
    npz_3d, npz_2d: VideoPose3D-format files given by path; when `npz_3d` is set they
      select a config of their own (see `npz_config`) and `name`'s config is ignored.
  """
  dataset, _, config = str(name).partition("/")
  if dataset != NAME:
    raise ValueError(f"{name!r} is not an h36m_poses dataset name")
  data_dir = os.fspath(data_dir) if data_dir else None
  if npz_3d:
    return Builder(config=npz_config(npz_3d, npz_2d), data_dir=data_dir)
  if npz_2d:
    raise ValueError(f"config.data.npz_2d={npz_2d!r} is set but config.data.npz_3d is not; "
                     "the 2D file needs the 3D file it belongs to")
  known = [c.name for c in Builder.BUILDER_CONFIGS]
  if config and config not in known:
    raise ValueError(f"unknown h36m_poses config {config!r}; known: {known} (or give "
                     "VideoPose3D files with config.data.npz_3d / npz_2d)")
  return Builder(config=config or None, data_dir=data_dir)


def ensure_built(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 manual_dir: str | os.PathLike | None = None, npz_3d: str = "",
                 npz_2d: str = "") -> Builder:
  """Builds the dataset unless a complete copy is already in `data_dir`; returns its builder.

  TFDS writes into a temporary folder and renames it when every split is written, so an
  interrupted build never leaves a copy that reads as complete; the next call rebuilds.
  """
  builder = make_builder(name, data_dir, npz_3d=npz_3d, npz_2d=npz_2d)
  if not builder.is_prepared():
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None, try_download_gcs=False)
    builder.download_and_prepare(download_config=download_config)
  return builder


__all__ = ["Builder", "H36mPosesConfig", "NAME", "ensure_built", "make_builder", "npz_config"]
