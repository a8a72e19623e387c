"""The base of every geopose_jax TFDS builder: ArrayRecord files, no TensorFlow needed."""

from __future__ import annotations

import inspect

from etils import epath
import tensorflow_datasets as tfds


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
