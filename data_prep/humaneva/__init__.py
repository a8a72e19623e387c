"""The `humaneva` dataset: HumanEva-I 15-joint poses from VideoPose3D's files."""

from __future__ import annotations

import os

from data_prep import array_record_builder
from data_prep.humaneva.humaneva_dataset_builder import Builder
from data_prep.humaneva.humaneva_dataset_builder import HumanEvaConfig
from data_prep.humaneva.humaneva_dataset_builder import NAME


def make_builder(name: str = NAME, data_dir: str | os.PathLike | None = None) -> Builder:
  """The builder of 'humaneva' or 'humaneva/<config>'."""
  return array_record_builder.builder_from_name(Builder, NAME, name, data_dir)


def ensure_built(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 manual_dir: str | os.PathLike | None = None) -> Builder:
  """Builds the dataset unless a complete copy is in `data_dir`; returns its builder."""
  return array_record_builder.prepare(make_builder(name, data_dir), manual_dir)


__all__ = ["Builder", "HumanEvaConfig", "NAME", "ensure_built", "make_builder"]
