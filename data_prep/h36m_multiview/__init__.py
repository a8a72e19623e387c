"""The `h36m_multiview` dataset: multi-view records of the raw Human3.6M release."""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_prep.h36m_multiview.h36m_multiview_dataset_builder import Builder
from data_prep.h36m_multiview.h36m_multiview_dataset_builder import H36mMultiviewConfig
from data_prep.h36m_multiview.h36m_multiview_dataset_builder import make_config
from data_prep.h36m_multiview.h36m_multiview_dataset_builder import NAME


def make_builder(name: str = NAME, data_dir: str | os.PathLike | None = None,
                 config: H36mMultiviewConfig | None = None,
                 num_workers: int | None = None) -> Builder:
  """The builder of `name` ('h36m_multiview' or 'h36m_multiview/<config>') or of `config`.

  Args:
    name: the dataset name, optionally with a builder config name.
    data_dir: where datasets are built and read; default configs.common.default_data_dir().
    config: a config from `make_config` (other sampling or splits); overrides `name`'s.
    num_workers: processes decoding and cropping in parallel (0: none; default up to 4).
  """
  dataset, _, config_name = str(name).partition("/")
  if dataset != NAME:
    raise ValueError(f"{name!r} is not an h36m_multiview dataset name")
  if not data_dir:
    from configs import common  # local import: configs is a sibling top-level package
    data_dir = common.default_data_dir()
  data_dir = os.fspath(data_dir)
  if config is not None:
    return Builder(config=config, data_dir=data_dir, num_workers=num_workers)
  known = [c.name for c in Builder.BUILDER_CONFIGS]
  if config_name and config_name not in known:
    raise ValueError(f"unknown h36m_multiview config {config_name!r}; known: {known} (other "
                     "sampling or splits: data_prep.h36m_multiview.make_config)")
  return Builder(config=config_name or None, data_dir=data_dir, num_workers=num_workers)


def ensure_built(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 manual_dir: str | os.PathLike | None = None,
                 config: H36mMultiviewConfig | None = None,
                 num_workers: int | None = None) -> Builder:
  """Builds the dataset unless a complete copy is already in `data_dir`; returns its builder.

  TFDS writes into a temporary folder and renames it once every split is written, so an
  interrupted build never leaves a copy that reads as complete; the next call rebuilds.

  Raises:
    FileNotFoundError: the manual folder or a file of the release is missing.
    ValueError: a file of the release is unreadable or malformed (named in the message).
    ImportError: the `[h36m]` extra (av, cdflib, h5py) is not installed.
  """
  builder = make_builder(name, data_dir, config, num_workers)
  if not builder.is_prepared():
    # Without a manual folder TFDS looks in <data_dir>/downloads/manual.
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config)
  return builder


__all__ = ["Builder", "H36mMultiviewConfig", "NAME", "ensure_built", "make_builder",
           "make_config"]
