"""Opening datasets (building them on first use) and reading their records.

`open_dataset(config.data)` returns a prepared TFDS builder; `RecordReader` gives random
access to one split's records with images left encoded, so a loader decodes only the views
it uses (in its Grain workers). Batching lives in `batching.py`.
"""

from __future__ import annotations

import io
import os
from typing import Any

import ml_collections
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from geopose_jax.data import builders
from geopose_jax.data import integrity
from geopose_jax.errors import ConfigError, DatasetError

Record = dict[str, Any]


# ----------------------------------------------------------------------------- datasets


def dataset_name(data_config: ml_collections.ConfigDict) -> str:
  """'name' or 'name/builder_config' from `config.data.name` (+ `config.data.builder_config`)."""
  name = str(data_config.name)
  builder_config = str(data_config.builder_config)
  if builder_config and "/" not in name:
    name = f"{name}/{builder_config}"
  return name


def split_subjects(data_config: ml_collections.ConfigDict, split: str) -> tuple[str, ...]:
  """The subjects a loader keeps of `split`: `config.data.train_subjects` /
  `test_subjects` (() = all); other splits (heldout, validate) are read whole."""
  if split in ("train", "test"):
    return tuple(str(s) for s in data_config[f"{split}_subjects"])
  return ()


def _data_dir(data_config) -> str:
  return os.path.expanduser(os.fspath(data_config.data_dir))


def _prepared(name: str, data_dir: str) -> tfds.core.DatasetBuilder | None:
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except (tfds.core.DatasetNotFoundError, ValueError, FileNotFoundError):
    return None
  return builder if builder.is_prepared() else None


def open_dataset(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared builder of `config.data.name`, building the dataset first if needed.

  A dataset whose builder is registered (geopose_jax/data/builders.py; data_prep registers
  them all) is built by it on first use: `config.data.manual_dir` is passed on for
  licence-gated sources, and `config.data.npz_3d` / `npz_2d` (VideoPose3D-format files given
  by path) when set. Any other name must already be prepared in `config.data.data_dir`.
  """
  name, data_dir = dataset_name(data_config), _data_dir(data_config)
  dataset = name.partition("/")[0]
  ensure_built = builders.builder_for(dataset)
  if ensure_built is None:
    builder = _prepared(name, data_dir)
    if builder is None:
      raise DatasetError(
          f"dataset {name!r} is not prepared in {data_dir} and no builder is registered for "
          f"it (registered: {builders.registered()}; `import data_prep` registers ours); "
          "check config.data.name and data_dir, or build it with python -m data_prep.build")
    integrity.check_dataset(builder.data_dir)
    return builder
  options = {}
  if data_config.manual_dir:
    options["manual_dir"] = os.path.expanduser(str(data_config.manual_dir))
  for key in ("npz_3d", "npz_2d"):
    if data_config[key]:
      options[key] = str(data_config[key])
  if ("npz_3d" in options or "npz_2d" in options) and dataset != "h36m_poses":
    raise ConfigError(f"config.data.npz_3d / npz_2d are for the h36m_poses dataset, not "
                      f"{name!r}")
  builder = _build_once(lambda: ensure_built(name, data_dir, **options), name)
  integrity.check_dataset(builder.data_dir, name)
  return builder


def _build_once(build_fn, name: str):
  """Runs a dataset build on process 0 first, then on the others.

  On several hosts sharing one data_dir, concurrent builds would race on TFDS's final
  rename; after process 0 has built, the other processes find a complete copy (shared
  filesystem) or build their own (host-local disks) without racing it.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return build_fn()
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  builder = build_fn() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices(f"dataset {name} built on process 0")
  return builder if builder is not None else build_fn()


def split_names(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
  return tuple(builder.info.splits.keys())


def check_split(builder: tfds.core.DatasetBuilder, split: str) -> None:
  if split not in builder.info.splits:
    raise ConfigError(f"dataset {builder.data_dir} has no split {split!r}; it has "
                      f"{split_names(builder)} (check --config.eval.splits and the data)")


# ----------------------------------------------------------------------------- records


def _image_features(features: tfds.features.FeaturesDict) -> set[str]:
  """Top-level keys whose values are (sequences of) encoded images."""
  names = set()
  for key, feature in features.items():
    inner = feature.feature if isinstance(feature, tfds.features.Sequence) else feature
    if isinstance(inner, tfds.features.Image):
      names.add(key)
  return names


class RecordReader:
  """Random access to one split's records, with images left encoded until asked for.

  Picklable: a Grain worker process reopens the files itself. `parse(i)` decodes every
  feature but images (kept as PNG/JPEG bytes; `decode_image` turns one into an array) and
  turns text into `str`.
  """

  def __init__(self, builder_dir: str, split: str):
    self.builder_dir = os.fspath(builder_dir)
    self.split = split
    self._opened = None

  def __getstate__(self):
    return {"builder_dir": self.builder_dir, "split": self.split, "_opened": None}

  def _open(self):
    if self._opened is None:
      builder = tfds.builder_from_directory(self.builder_dir)
      check_split(builder, self.split)
      source = builder.as_data_source(self.split)
      features = builder.info.features
      self._opened = (source, features, _image_features(features))
    return self._opened

  def __len__(self) -> int:
    return len(self._open()[0])

  def parse(self, index: int) -> Record:
    source, features, images = self._open()
    try:
      raw = source.data_source[int(index)]
      parsed = features._example_parser_np.parse_example(raw)  # pylint: disable=protected-access
      record = {}
      for key, value in parsed.items():
        if key in images:
          record[key] = value
        else:
          record[key] = _to_str(features[key].decode_example_np(value))
    except Exception as error:
      raise ValueError(f"{self.builder_dir} [{self.split}] record {index}: cannot be read "
                       f"({type(error).__name__}: {error}); the dataset files are damaged, "
                       "delete the folder and build it again") from error
    return record


def _to_str(value):
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, dict):
    return {k: _to_str(v) for k, v in value.items()}
  return value


def reader_for(builder: tfds.core.DatasetBuilder, split: str) -> RecordReader:
  check_split(builder, split)
  return RecordReader(os.fspath(builder.data_dir), split)


def decode_image(value) -> np.ndarray:
  """Encoded image bytes (or an already decoded array) -> (H, W[, C]) uint8."""
  if isinstance(value, (bytes, np.bytes_)):
    with PIL.Image.open(io.BytesIO(value)) as image:
      return np.asarray(image)
  return np.asarray(value)


def decode_view(value, view: int) -> np.ndarray:
  """One view of a per-camera image feature (list/array of 4) -> (H, W[, C]) uint8."""
  return decode_image(value[view])


def decode_mask(value, view: int) -> np.ndarray:
  """One view of a mask feature -> (H, W) uint8 in {0, 1}."""
  mask = decode_view(value, view)
  if mask.ndim == 3:
    mask = mask[..., 0]
  return (mask > 0).astype(np.uint8)
