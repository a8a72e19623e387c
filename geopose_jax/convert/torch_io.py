"""Reading PyTorch state dicts and mapping them onto Flax variable trees.

A state dict here is a plain mapping `name -> numpy array`; `load_state_dict` reads one from
a `torch.save` file (through `torch_pickle`, without PyTorch) or an `.npz`. A Flax module
whose submodule names mirror PyTorch's (see geopose_jax.models) maps mechanically:

  Conv   params/<path>/kernel (kh, kw, in, out) <- <path>.weight (out, in, kh, kw)
  Dense  params/<path>/kernel (in, out)         <- <path>.weight (out, in)
         params/<path>/bias                     <- <path>.bias
  BN     params/<path>/{scale, bias}            <- <path>.{weight, bias}
         batch_stats/<path>/{mean, var}         <- <path>.{running_mean, running_var}
with <path> the Flax path joined by '.' and an optional key prefix.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from typing import Any, Iterable, Mapping

import jax
import numpy as np

from geopose_jax.convert import torch_pickle
from geopose_jax.errors import InputError

StateDict = Mapping[str, np.ndarray]
PyTree = Any

# BatchNorm buffers that carry no information we use (absent in old checkpoints).
IGNORED_SUFFIXES = (".num_batches_tracked",)
_MAX_LISTED = 20


def load_state_dict(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, np.ndarray]:
  """Reads a state dict from a `torch.save` file (`.pth`/`.pt`/...) or an `.npz`.

  Returns name -> numpy array (each tensor's own dtype). Checkpoints wrapped as
  {'state_dict': ...}, {'model_state_dict': ...} or {'model': ...} are unwrapped, and a
  DataParallel 'module.' prefix is removed. PyTorch is not needed: `torch_pickle` reads the
  file and admits only tensors, dicts and numpy objects, never code. `allow_pickle` is kept
  for callers of the earlier torch-based reader and has no effect.
  """
  del allow_pickle
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"checkpoint file {path} does not exist")
  if path.suffix == ".npz":
    raw = _load_npz(path)
  else:
    raw = torch_pickle.read_checkpoint(path)
  for key in ("state_dict", "model_state_dict", "model"):
    if isinstance(raw.get(key), Mapping):
      raw = raw[key]
      break
  out = {}
  for name, value in raw.items():
    if not isinstance(value, np.ndarray):
      raise InputError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor; "
                       "expected a state dict of tensors")
    out[name[len("module."):] if name.startswith("module.") else name] = value
  return out


def _load_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  if not zipfile.is_zipfile(path):
    raise InputError(f"{path} is not an .npz archive; expected arrays saved with np.savez "
                     "(or give the .pth that torch.save wrote)")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise InputError(f"{path} cannot be read as arrays saved with np.savez "
                     f"({type(e).__name__}: {e})") from e


@dataclasses.dataclass(frozen=True)
class Target:
  """Where one PyTorch tensor goes: `collection/path` in the Flax tree, and its layout."""
  collection: str
  path: tuple[str, ...]
  layout: str            # 'conv' | 'dense' | 'vector'
  flax_shape: tuple[int, ...]

  @property
  def torch_shape(self) -> tuple[int, ...]:
    s = self.flax_shape
    if self.layout == "conv":
      return (s[3], s[2], s[0], s[1])
    if self.layout == "dense":
      return (s[1], s[0])
    return s


def to_flax_layout(array: np.ndarray, layout: str) -> np.ndarray:
  """PyTorch Conv2d (out, in, kh, kw) -> (kh, kw, in, out); Linear (out, in) -> (in, out)."""
  if layout == "conv":
    return np.transpose(array, (2, 3, 1, 0))
  if layout == "dense":
    return array.T
  return array


def torch_names(variables: PyTree, prefix: str = "") -> dict[str, Target]:
  """PyTorch key -> Target for every leaf of a Flax {'params', 'batch_stats'} tree.

  `variables` may hold arrays or ShapeDtypeStructs (from `jax.eval_shape(model.init, ...)`).
  """
  params = variables.get("params", {})
  names: dict[str, Target] = {}

  def visit(node: Mapping[str, Any], path: tuple[str, ...]):
    leaves = {k: v for k, v in node.items() if not isinstance(v, Mapping)}
    for key, child in node.items():
      if isinstance(child, Mapping):
        visit(child, path + (key,))
    if not leaves:
      return
    base = prefix + ".".join(path)
    if "scale" in leaves:  # BatchNorm
      names[base + ".weight"] = Target("params", path + ("scale",), "vector",
                                       tuple(leaves["scale"].shape))
      names[base + ".bias"] = Target("params", path + ("bias",), "vector",
                                     tuple(leaves["bias"].shape))
      stats = _subtree(variables.get("batch_stats", {}), path)
      for ours, theirs in (("mean", "running_mean"), ("var", "running_var")):
        if stats is None or ours not in stats:
          raise ValueError(f"BatchNorm at {'/'.join(path)} has no batch_stats/{ours}")
        names[f"{base}.{theirs}"] = Target("batch_stats", path + (ours,), "vector",
                                           tuple(stats[ours].shape))
      return
    kernel = leaves.get("kernel")
    if kernel is None:
      raise ValueError(f"cannot map {'/'.join(path)} (leaves {sorted(leaves)}) to PyTorch names")
    layout = {4: "conv", 2: "dense"}.get(len(kernel.shape))
    if layout is None:
      raise ValueError(f"kernel at {'/'.join(path)} has unsupported rank {len(kernel.shape)}")
    names[base + ".weight"] = Target("params", path + ("kernel",), layout, tuple(kernel.shape))
    if "bias" in leaves:
      names[base + ".bias"] = Target("params", path + ("bias",), "vector",
                                     tuple(leaves["bias"].shape))

  visit(params, ())
  return names


def _subtree(tree: Mapping[str, Any], path: Iterable[str]) -> Mapping[str, Any] | None:
  for key in path:
    if not isinstance(tree, Mapping) or key not in tree:
      return None
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple[str, ...], value: np.ndarray):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _listing(items: list[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def import_tensors(state_dict: StateDict, targets: Mapping[str, Target],
                   source: str = "state dict") -> dict[str, dict]:
  """Builds a {'params', 'batch_stats'} tree of float32 numpy arrays from `state_dict`.

  Every target key must be present with its PyTorch shape; all problems are reported in
  one ValueError naming the keys (and `source`, e.g. the file).
  """
  missing = [k for k in targets if k not in state_dict]
  wrong = [f"{k}: got {tuple(np.shape(state_dict[k]))}, expected {t.torch_shape}"
           for k, t in targets.items() if k in state_dict
           and tuple(np.shape(state_dict[k])) != t.torch_shape]
  if missing or wrong:
    lines = [f"{source} does not match the model"]
    if missing:
      lines.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if wrong:
      lines.append(f"mis-shaped keys ({len(wrong)}): {_listing(wrong)}")
    lines.append("check that the model configuration (widths, depths, latent sizes, "
                 "image_size) is the one the checkpoint was trained with")
    raise ValueError("; ".join(lines))
  tree: dict[str, dict] = {"params": {}, "batch_stats": {}}
  for key, target in targets.items():
    value = to_flax_layout(np.asarray(state_dict[key], np.float32), target.layout)
    _set(tree[target.collection], target.path, np.ascontiguousarray(value))
  return tree


def check_unexpected(state_dict: StateDict, used: Iterable[str], skipped, source: str):
  """Fails on keys neither used nor deliberately skipped (`skipped(key) -> bool`)."""
  used = set(used)
  unexpected = sorted(k for k in state_dict if k not in used and not skipped(k)
                      and not k.endswith(IGNORED_SUFFIXES))
  if unexpected:
    raise ValueError(f"{source} has {len(unexpected)} keys the model does not know: "
                     f"{_listing(unexpected)}; is it a checkpoint of this architecture?")


def merge(base: PyTree, update: PyTree) -> PyTree:
  """Returns `base` with the leaves present in nested dict `update` replaced."""
  if not isinstance(update, Mapping):
    return update
  out = dict(base)
  for key, value in update.items():
    if key not in out:
      raise ValueError(f"cannot merge unknown key {key!r} into the variables")
    out[key] = merge(out[key], value)
  return out


def shapes_of(fn, *args) -> PyTree:
  """`jax.eval_shape` turned into plain nested dicts (FrozenDicts unfrozen)."""
  return _unfreeze(jax.eval_shape(fn, *args))


def _unfreeze(tree: PyTree) -> PyTree:
  if isinstance(tree, Mapping):
    return {k: _unfreeze(v) for k, v in tree.items()}
  return tree
