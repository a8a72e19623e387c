"""The `mpi_inf_3dhp` dataset: MPI-INF-3DHP test and training poses, test crops."""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_prep.mpi_inf_3dhp.mpi_inf_3dhp_dataset_builder import Builder
from data_prep.mpi_inf_3dhp.mpi_inf_3dhp_dataset_builder import Mpi3dhpConfig
from data_prep.mpi_inf_3dhp.mpi_inf_3dhp_dataset_builder import NAME
from geopose_jax.errors import ConfigError


def make_builder(name: str = NAME, data_dir: str | os.PathLike | None = None) -> Builder:
  """The builder of 'mpi_inf_3dhp' or 'mpi_inf_3dhp/<config>'."""
  dataset, _, config = str(name).partition("/")
  if dataset != NAME:
    raise ConfigError(f"{name!r} is not an mpi_inf_3dhp dataset name")
  known = [c.name for c in Builder.BUILDER_CONFIGS]
  if config and config not in known:
    raise ConfigError(f"unknown mpi_inf_3dhp config {config!r}; known: {known}")
  return Builder(config=config or None, data_dir=os.fspath(data_dir) if data_dir else None)


def ensure_built(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 manual_dir: str | os.PathLike | None = None) -> Builder:
  """Builds the dataset unless a complete copy is in `data_dir`; returns its builder.

  TFDS writes into a temporary folder and renames it when every split is written, so an
  interrupted build never leaves a copy that reads as complete.
  """
  builder = make_builder(name, data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None, try_download_gcs=False))
  return builder


__all__ = ["Builder", "Mpi3dhpConfig", "NAME", "ensure_built", "make_builder"]
