"""Writes files in `torch.save`'s layouts from numpy arrays, for tests that have no PyTorch.

The pickle names the same globals and persistent ids torch does: a tensor is a call of
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)` and
a storage the persistent id ('storage', torch.<Name>Storage, key, 'cpu', numel) (the legacy
layout adds a sixth entry, the view, None). Wrap a numpy array in `Tensor` to store it as a
tensor; a bare numpy array is pickled by numpy, as torch.save does with one.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage", np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage",
}
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class Global:
  """A reference to `module.name`, written as a GLOBAL opcode without importing it."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle insists a reduce function be callable
    raise TypeError("a stand-in, never called")


class Storage:
  """A flat run of elements (N,) that tensors view; `type_name` overrides torch's name."""

  def __init__(self, flat: np.ndarray, type_name: str | None = None):
    self.flat = np.ascontiguousarray(flat).reshape(-1)
    self.type_name = type_name or STORAGE_NAMES[self.flat.dtype]


class Tensor:
  """A tensor: `storage` viewed at element `offset` with `size` and element `stride`."""

  def __init__(self, storage: Storage, offset: int, size, stride, requires_grad: bool = False):
    self.storage, self.offset = storage, offset
    self.size, self.stride, self.requires_grad = tuple(size), tuple(stride), requires_grad

  @classmethod
  def of(cls, array: np.ndarray, type_name: str | None = None) -> "Tensor":
    """A contiguous tensor holding a copy of `array`, in a storage of its own."""
    array = np.asarray(array)
    stride = tuple(int(np.prod(array.shape[i + 1:])) for i in range(array.ndim))
    return cls(Storage(array, type_name), 0, array.shape, stride)

  def __reduce__(self):
    return (Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, self.offset, self.size, self.stride, self.requires_grad,
             collections.OrderedDict()))


class Call:
  """Pickles as a call of `module.name(*args)`: for writing files a reader must refuse."""

  def __init__(self, module: str, name: str, *args):
    self.function, self.args = Global(module, name), args

  def __reduce__(self):
    return self.function, self.args


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """The pure-Python pickler, taught to write `Global`s and to give storages persistent ids."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, legacy: bool):
    super().__init__(file, protocol=2)
    self.legacy = legacy
    self.storages: dict[int, tuple[str, Storage]] = {}
    self._storage_types: dict[str, Global] = {}

  def save_global_reference(self, obj: Global):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
    self.memoize(obj)

  dispatch[Global] = save_global_reference

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    if id(obj) not in self.storages:
      key = str(len(self.storages)) if not self.legacy else str(94000000 + 16 * len(self.storages))
      self.storages[id(obj)] = (key, obj)
    key, _ = self.storages[id(obj)]
    storage_type = self._storage_types.setdefault(obj.type_name, Global("torch", obj.type_name))
    pid = ("storage", storage_type, key, "cpu", obj.flat.shape[0])
    return pid + (None,) if self.legacy else pid


def _pickle(obj: Any, legacy: bool) -> tuple[bytes, list[tuple[str, Storage]]]:
  buffer = io.BytesIO()
  pickler = _Pickler(buffer, legacy)
  pickler.dump(obj)
  return buffer.getvalue(), list(pickler.storages.values())


def save_zip(obj: Any, path, *, archive: str = "archive", byteorder: str | None = "little",
             with_data_pkl: bool = True) -> None:
  """Writes `obj` as torch.save's zip layout: <archive>/data.pkl, data/<key>, byteorder,
  version. `byteorder=None` leaves that record out (as torch < 1.9 did)."""
  data, storages = _pickle(obj, legacy=False)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
    if with_data_pkl:
      out.writestr(f"{archive}/data.pkl", data)
    if byteorder is not None:
      out.writestr(f"{archive}/byteorder", byteorder)
    for key, storage in storages:
      out.writestr(f"{archive}/data/{key}", storage.flat.tobytes())
    out.writestr(f"{archive}/version", "3\n")


def save_legacy(obj: Any, path, *, little_endian: bool = True) -> None:
  """Writes `obj` as torch.save's pre-1.6 layout: magic, protocol, system info, the object
  pickle, the sorted storage keys, then each storage as int64 count + raw bytes."""
  data, storages = _pickle(obj, legacy=True)
  storages = sorted(storages, key=lambda item: item[0])
  sys_info = {"protocol_version": 1001, "little_endian": little_endian,
              "type_sizes": {"short": 2, "int": 4, "long": 4}}
  with open(path, "wb") as out:
    for header in (LEGACY_MAGIC, 1001, sys_info):
      pickle.dump(header, out, protocol=2)
    out.write(data)
    pickle.dump([key for key, _ in storages], out, protocol=2)
    for _, storage in storages:
      out.write(struct.pack("<q", storage.flat.shape[0]))
      out.write(storage.flat.tobytes())


assert sys.byteorder == "little", "the fake checkpoints are written in native (little) order"
