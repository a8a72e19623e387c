"""The `synthetic_multiview` dataset: CMU motion rendered through Human3.6M cameras.

    from data_prep import synthetic_multiview
    builder = synthetic_multiview.ensure_built()          # builds on first use
    source = builder.as_data_source()["train"]
    record = synthetic_multiview.decode_record(source[0])  # the multi-view layout
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.synthetic_multiview.features import decode_record
from data_prep.synthetic_multiview.features import multiview_features
from data_prep.synthetic_multiview.synthetic_multiview_dataset_builder import Builder
from data_prep.synthetic_multiview.synthetic_multiview_dataset_builder import NAME
from data_prep.synthetic_multiview.synthetic_multiview_dataset_builder import (
    SyntheticMultiviewConfig)


def _default_data_dir() -> str:
  from configs import common  # local import: configs is a sibling top-level package
  return common.default_data_dir()


def make_builder(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 library_dir: str | os.PathLike | None = None,
                 num_workers: int | None = None) -> Builder:
  """The builder of `name` ('synthetic_multiview' or 'synthetic_multiview/<config>')."""
  return array_record_builder.builder_from_name(
      Builder, NAME, name, data_dir or _default_data_dir(), library_dir=library_dir,
      num_workers=num_workers)


def ensure_built(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 manual_dir: str | os.PathLike | None = None,
                 library_dir: str | os.PathLike | None = None,
                 num_workers: int | None = None) -> Builder:
  """Builds the dataset unless a complete copy is already in `data_dir`; returns its builder.

  TFDS writes into a temporary `incomplete.*` folder and renames it once every split is
  written, so an interrupted build never reads as complete; the next call starts over.

  Args:
    name: 'synthetic_multiview' (config `default`) or 'synthetic_multiview/tiny'.
    data_dir: where datasets live; default configs.common.default_data_dir().
    manual_dir: unused (nothing to download); accepted for a uniform command line.
    library_dir: the CMU motion library; default the packaged one.
    num_workers: rendering processes (default min(2, CPUs); 0 renders in-process).
  """
  del manual_dir
  builder = make_builder(name, data_dir, library_dir=library_dir, num_workers=num_workers)
  if not builder.is_prepared():
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


__all__ = ["Builder", "NAME", "SyntheticMultiviewConfig", "decode_record", "ensure_built",
           "make_builder", "multiview_features"]
