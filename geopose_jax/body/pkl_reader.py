"""Reads the official SMPL .pkl files without chumpy and without running arbitrary code.

The files are Python 2 pickles (latin1 strings) holding numpy arrays, a scipy sparse
J_regressor and `chumpy` objects (the differentiable arrays of the model's authors). The
unpickler here only builds numpy arrays, scipy sparse matrices and stand-ins for chumpy
classes; every other global stops the load with its name. A stand-in keeps the pickled
state, from which a plain chumpy array (`Ch`) gives its value `x`.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import scipy.sparse

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_BUILTINS = {"set", "frozenset", "object", "list", "dict", "tuple", "slice", "complex"}


class ChumpyStandIn:
  """What a chumpy object unpickles to: its class name and its pickled attributes."""
  chumpy_class = "chumpy"

  def __setstate__(self, state):
    self.__dict__["state"] = state if isinstance(state, dict) else {"state": state}

  def value(self, key: str) -> np.ndarray:
    """The array this object stands for; plain `Ch` arrays keep it in `x`."""
    state = self.__dict__.get("state", {})
    if "x" in state and not isinstance(state["x"], ChumpyStandIn):
      return np.asarray(state["x"])
    raise ValueError(f"SMPL .pkl key {key!r} is a chumpy {self.chumpy_class} expression, not a "
                     "plain array; convert the model to .npz with chumpy installed "
                     "(np.array(model[key])) and load that")


def _stand_in(module: str, name: str) -> type:
  return type(name, (ChumpyStandIn,), {"chumpy_class": f"{module}.{name}"})


class _RestrictedUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str) -> Any:
    if module == "chumpy" or module.startswith("chumpy."):
      return _stand_in(module, name)
    if (module, name) in _NUMPY_GLOBALS:
      if name == "_reconstruct":
        return _reconstruct
      if name == "scalar":
        return _scalar
      return getattr(np, name)
    if module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")):
      return getattr(scipy.sparse, name)
    if module in ("copy_reg", "copyreg") and name in ("_reconstructor", "__newobj__"):
      import copyreg
      return getattr(copyreg, name)
    if (module, name) == ("_codecs", "encode"):  # How Python 3 writes bytes at protocol 2.
      import codecs
      return codecs.encode
    if module in ("__builtin__", "builtins") and name in _BUILTINS:
      import builtins
      return getattr(builtins, name)
    raise pickle.UnpicklingError(
        f"SMPL .pkl refers to {module}.{name}, which is not an array type; refusing to load it")


def _reconstruct(cls, shape, dtype):
  """numpy's own pickle hook for arrays, without importing numpy.core by name."""
  return np.ndarray.__new__(cls, shape, dtype)


def _scalar(dtype, data=None):
  if data is None:
    return dtype.type(0)
  if isinstance(data, str):  # Python 2 byte strings arrive as latin1 text.
    data = data.encode("latin1")
  return np.frombuffer(data, dtype=dtype)[0]


def read_pkl(path: str | os.PathLike) -> dict:
  """The raw dict of an SMPL .pkl, chumpy objects as `ChumpyStandIn`."""
  with open(path, "rb") as f:
    try:
      data = _RestrictedUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
      raise ValueError(f"cannot read SMPL model {path}: {e}") from e
  if not isinstance(data, dict):
    raise ValueError(f"SMPL model {path} holds a {type(data).__name__}, expected a dict")
  return data


def read_smpl_pkl(path: str | os.PathLike) -> dict:
  """SMPL .pkl -> dict of numpy arrays (J_regressor stays scipy sparse if it was)."""
  data = read_pkl(path)
  out = {}
  for key, value in data.items():
    if isinstance(value, ChumpyStandIn):
      value = value.value(key)
    out[key] = value
  return out
