"""The `smpl_params` dataset: SMPL (theta, beta) per frame for the pose prior."""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.smpl_params.smpl_params_dataset_builder import Builder
from data_prep.smpl_params.smpl_params_dataset_builder import NAME
from data_prep.smpl_params.smpl_params_dataset_builder import SmplParamsConfig


def make_builder(name: str = NAME, data_dir: str | os.PathLike | None = None) -> Builder:
  """The builder for 'smpl_params' or 'smpl_params/<config>' ('cmu' or 'surreal')."""
  return array_record_builder.builder_from_name(Builder, NAME, name, data_dir)


def ensure_built(name: str = NAME, data_dir: str | os.PathLike | None = None, *,
                 manual_dir: str | os.PathLike | None = None) -> Builder:
  """Builds the dataset unless a complete copy is already in `data_dir`; returns its builder."""
  return array_record_builder.prepare(make_builder(name, data_dir), manual_dir)


def load_split(builder: Builder, split: str) -> dict[str, np.ndarray]:
  """Every record of `split` as arrays: theta (N, 72), beta (N, 10) float32, frame (N,)
  int32, mirrored (N,) bool, and source, cmu_subject, action (N,) str."""
  if split not in builder.info.splits:
    raise ValueError(f"smpl_params ({builder.builder_config.name}) has no split {split!r}; "
                     f"it has {list(builder.info.splits)}")
  source = builder.as_data_source(split=split)
  records = [source[i] for i in range(len(source))]
  text = lambda value: value.decode() if isinstance(value, bytes) else str(value)  # noqa: E731
  out = {"theta": np.stack([r["theta"] for r in records]).astype(np.float32),
         "beta": np.stack([r["beta"] for r in records]).astype(np.float32),
         "frame": np.asarray([r["frame"] for r in records], np.int32),
         "mirrored": np.asarray([r["mirrored"] for r in records], bool)}
  for key in ("source", "cmu_subject", "action"):
    out[key] = np.asarray([text(r[key]) for r in records])
  return out


__all__ = ["Builder", "NAME", "SmplParamsConfig", "ensure_built", "load_split", "make_builder"]
