"""Reading files written by `torch.save` into numpy, without PyTorch.

Two layouts exist (PyTorch's `torch/serialization.py` is the reference):
  zip (default since torch 1.6): `<name>/data.pkl` is the object pickle, `<name>/data/<key>`
      the raw bytes of each storage, `<name>/byteorder` 'little' or 'big' (absent before 1.9,
      then little), `<name>/version`.
  legacy: five things back to back in one file: a pickled magic number, a pickled protocol
      version, a pickled dict of system facts (endianness, type sizes), the object pickle,
      a pickled list of storage keys, then per key an int64 element count and the raw bytes.
In both, a tensor is pickled as a call of `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)` and a storage as a persistent id ('storage', <torch.XStorage>, key,
location, numel[, view]). We unpickle with a restricted `find_class` that resolves only what
a model checkpoint holds, turn each storage into a flat numpy array, and each tensor into a
copied strided view of it. Nothing in the file can run code while it is read.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pathlib
import pickle
import struct
import zipfile
from typing import Any, Callable

import ml_dtypes
import numpy as np

from geopose_jax.errors import InputError

_EXPECTED = "expected a PyTorch checkpoint written by torch.save"
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> element dtype. Complex, quantized and the exotic float8/uint16..64
# storages do not occur in the originals' checkpoints and are refused by name.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "UntypedStorage": np.dtype(np.uint8),
}
# torch.<dtype> globals (pickled by name, e.g. in optimizer state or tensor metadata).
_TORCH_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": ml_dtypes.bfloat16,
    "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32,
    "int16": np.int16, "short": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}

# numpy objects the originals store next to the weights (RIE / VideoPose3D keep the
# training generator's RandomState); resolved through numpy itself.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.random", "__RandomState_ctor"), ("numpy.random.mtrand", "RandomState"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.random._mt19937", "MT19937"),
    ("numpy.dtypes", "UInt32DType"), ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "Int64DType"), ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Int32DType"), ("numpy.dtypes", "BoolDType"),
}
_PLAIN_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): None,  # protocol-2 bytes; resolved by pickle itself
}


class StorageType:
  """Stands for a `torch.<Name>Storage` class inside the pickle."""

  def __init__(self, name: str, dtype: np.dtype):
    self.name, self.dtype = name, dtype

  def __repr__(self):
    return f"torch.{self.name}"


class _TensorClass:
  """Stands for `torch.Tensor` / `torch.nn.Parameter` when a tensor is pickled by type."""


def _strided_copy(storage: np.ndarray, offset: int, size, stride) -> np.ndarray:
  """The tensor (size) read from flat `storage` (N,) at element `offset` with element
  `stride`s, copied out so it owns its memory."""
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
    raise ValueError(f"bad tensor layout: size {size}, stride {stride}, offset {offset}")
  if 0 in size:
    return np.empty(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.shape[0]:
    raise ValueError(f"tensor of size {size}, stride {stride}, offset {offset} reaches element "
                     f"{last} of a storage of {storage.shape[0]}")
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride),
      writeable=False)
  return np.array(view, copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> np.ndarray:
  return _strided_copy(storage, int(storage_offset), size, stride)


def _rebuild_parameter(data, *unused):
  return data


def _device(kind, index=None) -> str:
  """torch.device('cuda', 0) -> 'cuda:0' (where a tensor lived is of no use here)."""
  return str(kind) if index is None else f"{kind}:{index}"


def _rebuild_from_type(func, new_type, args, state):
  del new_type, state  # a Tensor or Parameter subclass: the values are all we keep
  return func(*args)


_TORCH_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch", "Tensor"): _TensorClass, ("torch.nn.parameter", "Parameter"): _TensorClass,
    ("torch", "Size"): tuple, ("torch", "device"): _device,
}


def _numpy_global(module: str, name: str):
  """numpy 2 moved numpy.core to numpy._core; files from either era name either."""
  if module.startswith("numpy.core") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
    module = "numpy._core" + module[len("numpy.core"):]
  return getattr(importlib.import_module(module), name)


class _CheckpointUnpickler(pickle.Unpickler):
  """Admits tensors, storages, (ordered) dicts and numpy arrays / RandomState only."""

  def __init__(self, file, source: str, load_storage: Callable[[tuple], Any],
               rebuild: Callable[..., Any] | None = None):
    super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
    self._source, self._load_storage, self._rebuild = source, load_storage, rebuild

  def find_class(self, module: str, name: str):
    module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    key = (module, name)
    if key in _TORCH_FUNCTIONS:
      found = _TORCH_FUNCTIONS[key]
      return self._rebuild if found is _rebuild_tensor and self._rebuild else found
    if module in ("torch", "torch.cuda", "torch.storage") and name.endswith("Storage"):
      if name not in STORAGE_DTYPES:
        raise InputError(f"{self._source}: holds a tensor of storage type {module}.{name}, "
                         f"which is not read (supported: {', '.join(sorted(STORAGE_DTYPES))})")
      return StorageType(name, STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
      return np.dtype(_TORCH_DTYPES[name])
    if key in _PLAIN_GLOBALS:
      return _PLAIN_GLOBALS[key] or super().find_class(module, name)
    if key in _NUMPY_GLOBALS:
      try:
        return _numpy_global(module, name)
      except (ImportError, AttributeError) as e:
        raise InputError(f"{self._source}: refers to {module}.{name}, which this numpy "
                         f"({np.__version__}) does not have") from e
    raise InputError(f"{self._source}: refers to the global {module}.{name}, which a model "
                     "checkpoint does not hold; refusing to read it (only tensors, dicts, lists "
                     "and numpy arrays are read; a whole pickled model must be re-saved as "
                     "torch.save(model.state_dict(), path))")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
      raise InputError(f"{self._source}: unknown persistent id {pid!r:.80}; {_EXPECTED}")
    if not isinstance(pid[1], StorageType):
      raise InputError(f"{self._source}: storage of unknown type {pid[1]!r:.80}; {_EXPECTED}")
    return self._load_storage(pid)


def read_checkpoint(path: str | os.PathLike) -> dict:
  """Reads what `torch.save` wrote to `path` (zip or legacy layout) into plain Python.

  Tensors (and Parameters) become numpy arrays of their dtype, shape and values (copies, so
  two tensors that shared a storage no longer share memory); dicts, lists, tuples, numbers,
  strings and numpy objects stay as they are. The top level must be a dict (a state dict or
  a training checkpoint holding one). Raises InputError, naming the file, for anything that
  is not such a checkpoint or that refers to a global outside the admitted set.
  """
  path = pathlib.Path(path)
  source = str(path)
  if not path.is_file():
    raise InputError(f"checkpoint file {source} does not exist")
  with open(path, "rb") as f:
    head = f.read(4)
  try:
    if zipfile.is_zipfile(path):
      obj = _read_zip(path, source)
    elif head.startswith(b"PK"):
      raise InputError(f"{source} is a truncated or damaged zip archive; {_EXPECTED}")
    else:
      obj = _read_legacy(path, source)
  except InputError:
    raise
  except zipfile.BadZipFile as e:
    raise InputError(f"{source} is a damaged zip archive ({e}); {_EXPECTED}") from e
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
          AttributeError, struct.error, OverflowError, MemoryError) as e:
    raise InputError(f"{source} cannot be read ({type(e).__name__}: {e}); {_EXPECTED}") from e
  if not isinstance(obj, dict):
    what = "tensor" if isinstance(obj, np.ndarray) else type(obj).__name__
    raise InputError(f"{source} holds a {what}, not a dict; {_EXPECTED} "
                     "from a state dict or a dict holding one")
  return dict(obj)


def _read_zip(path: pathlib.Path, source: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise InputError(f"{source} is a zip archive without a data.pkl at its top folder "
                       f"(has {', '.join(names[:5]) or 'nothing'}); {_EXPECTED}")
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "byteorder" in names:
      order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
      if order != "little":
        what = "big-endian" if order == "big" else f"{order!r} byte order"
        raise InputError(f"{source} was written with {what} data; only little-endian "
                         "checkpoints are read (re-save it on a little-endian machine)")
    storages: dict[str, np.ndarray] = {}

    def load_storage(pid: tuple) -> np.ndarray:
      storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
      if key not in storages:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise InputError(f"{source}: storage {record} is missing; {_EXPECTED}")
        data = archive.read(record)
        dtype = storage_type.dtype
        # An untyped storage counts bytes; a typed one elements.
        if len(data) < numel * dtype.itemsize:
          raise InputError(f"{source}: storage {record} has {len(data)} bytes, fewer than "
                           f"{numel} x {dtype.itemsize}; the file is damaged")
        storages[key] = np.frombuffer(data, dtype, count=numel)
      return storages[key]

    with archive.open(pickles[0]) as f:
      return _CheckpointUnpickler(io.BytesIO(f.read()), source, load_storage).load()


def _read_legacy(path: pathlib.Path, source: str) -> Any:
  with open(path, "rb") as f:
    header = _HeaderUnpickler(f)
    try:
      magic = header.load()
    except Exception as e:  # a random file: any unpickling failure means "not ours"
      raise InputError(f"{source} is neither a zip archive nor a legacy torch.save file; "
                       f"{_EXPECTED}") from e
    if magic != _LEGACY_MAGIC:
      raise InputError(f"{source} is neither a zip archive nor a legacy torch.save file "
                       f"(no magic number); {_EXPECTED}")
    protocol = header.load()
    if protocol != _LEGACY_PROTOCOL:
      raise InputError(f"{source}: legacy torch.save protocol {protocol!r} is not read "
                       f"(only {_LEGACY_PROTOCOL}); re-save it with a recent torch")
    sys_info = header.load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
      raise InputError(f"{source} was written with big-endian data; only little-endian "
                       "checkpoints are read (re-save it on a little-endian machine)")
    # The storages' bytes follow the object pickle: a first pass learns which storages the
    # tensors use (and where the pickle ends), a second rebuilds the tensors from them.
    object_start = f.tell()
    wanted: dict[str, StorageType] = {}
    views: dict[str, tuple[str, int, int]] = {}

    def note_storage(pid: tuple) -> None:
      wanted.setdefault(str(pid[2]), pid[1])
      view = pid[5] if len(pid) > 5 else None
      if view is not None:
        views[str(view[0])] = (str(pid[2]), int(view[1]), int(view[2]))

    _CheckpointUnpickler(f, source, note_storage, rebuild=_skip_tensor).load()
    keys = _HeaderUnpickler(f).load()
    if not isinstance(keys, list):
      raise InputError(f"{source}: the storage key list is a {type(keys).__name__}; {_EXPECTED}")
    storages: dict[str, np.ndarray] = {}
    for key in (str(k) for k in keys):
      if key not in wanted:
        raise InputError(f"{source}: storage {key} is not referred to by any tensor; {_EXPECTED}")
      dtype = wanted[key].dtype
      count_bytes = f.read(8)
      count = struct.unpack("<q", count_bytes)[0] if len(count_bytes) == 8 else -1
      data = f.read(count * dtype.itemsize) if count >= 0 else b""
      if count < 0 or len(data) < count * dtype.itemsize:
        raise InputError(f"{source} is truncated (the data of storage {key} is incomplete); "
                         f"{_EXPECTED}")
      storages[key] = np.frombuffer(data, dtype, count=count)
    missing = sorted(set(wanted) - set(storages))
    if missing:
      raise InputError(f"{source} lacks the data of storages {missing[:5]}; {_EXPECTED}")
    for view_key, (root, offset, size) in views.items():
      storages[view_key] = storages[root][offset:offset + size]

    def load_storage(pid: tuple) -> np.ndarray:
      view = pid[5] if len(pid) > 5 else None
      return storages[str(view[0]) if view is not None else str(pid[2])]

    f.seek(object_start)
    return _CheckpointUnpickler(f, source, load_storage).load()


def _skip_tensor(*unused) -> None:
  return None


class _HeaderUnpickler(pickle.Unpickler):
  """The legacy header pickles and key list hold only ints, str, bools and dicts."""

  def __init__(self, file):
    super().__init__(file, encoding="latin1")

  def find_class(self, module, name):
    raise pickle.UnpicklingError(f"a legacy header refers to the global {module}.{name}")
