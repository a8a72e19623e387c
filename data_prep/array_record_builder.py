"""The base of every geopose_jax TFDS builder: ArrayRecord files, no TensorFlow needed."""

from __future__ import annotations

import inspect
import os

from etils import epath
import tensorflow_datasets as tfds

from geopose_jax.errors import ConfigError


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder that writes ArrayRecord files (read back by Grain)."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default looks the module up through `importlib_resources`, which is not a
    # dependency; the builder's own file is all it needs.
    return epath.Path(inspect.getfile(cls))

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)


def builder_from_name(builder_class, dataset: str, name: str,
                      data_dir: str | os.PathLike | None = None, **builder_kwargs):
  """`builder_class(config=..., data_dir=..., **builder_kwargs)` for 'dataset' or
  'dataset/<config>'; a wrong name or config is one line."""
  given, _, config = str(name).partition("/")
  if given != dataset:
    raise ConfigError(f"{name!r} is not a {dataset} dataset name")
  known = [c.name for c in builder_class.BUILDER_CONFIGS]
  if config and config not in known:
    raise ConfigError(f"unknown {dataset} config {config!r}; known: {known}")
  return builder_class(config=config or None,
                       data_dir=os.fspath(data_dir) if data_dir else None, **builder_kwargs)


def prepare(builder, manual_dir: str | os.PathLike | None = None):
  """Builds unless a complete copy exists; returns the builder.

  TFDS writes into a temporary folder and renames it when every split is written, so an
  interrupted build never leaves a copy that reads as complete.
  """
  if not builder.is_prepared():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None, try_download_gcs=False))
  return builder
