"""Import of the original RIE and VideoPose3D PyTorch checkpoints.

RIE's released `gt_pretrained.bin` / `cpn_pretrained.bin` and VideoPose3D's checkpoints are
dicts (`epoch`, `lr`, `optimizer`, `model_pos`, `random_state`, ...); `model_pos` is the state
dict this module maps, as a flat mapping name -> numpy array, onto our parameter trees:
  RIE model (`RIEModel`)          -> geopose_jax.models.rie.RIE
  VideoPose3D (`TemporalModel` / `TemporalModelOptimized1f`, same keys) -> models.tcn.TemporalConvNet
Conv1d weights (out, in, k) become Flax kernels (k, in, out); 1x1 convolutions and Linear
weights (out, in) become Dense kernels (in, out); BatchNorm weight/bias/running_mean/running_var
become scale/bias and batch_stats mean/var; `num_batches_tracked` is ignored.
RIE's group modules LArm/RArm/LLeg/RLeg hold joints 14-16/11-13/1-3/4-6 and map onto our
right_arm/left_arm/right_leg/left_leg.

Every expected key must be present with the expected shape and every original key must be
used, else one ValueError lists what is wrong.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.convert import torch_pickle
from geopose_jax.errors import InputError
from geopose_jax.models.rie import GROUP_NAMES, RIE
from geopose_jax.models.tcn import TemporalConvNet

_RIE_GROUP_PREFIX = dict(zip(GROUP_NAMES, ("Torso", "LArm", "RArm", "LLeg", "RLeg")))
_BN_LEAVES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _conv_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Conv1d (out, in, k) -> Flax (k, in, out)."""
  return np.transpose(w, (2, 1, 0))


def _pointwise_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Conv1d (out, in, 1) -> Flax Dense (in, out)."""
  if w.ndim != 3 or w.shape[2] != 1:
    return w  # reported as a shape mismatch by the caller
  return w[:, :, 0].T


def _linear_kernel(w: np.ndarray) -> np.ndarray:
  return w.T if w.ndim == 2 else w


def _identity(w: np.ndarray) -> np.ndarray:
  return w


def _bn_source(prefix: str, leaf: str) -> tuple[str, Any]:
  return f"{prefix}.{_BN_LEAVES[leaf]}", _identity


def _temporal_encoder_source(prefix: str, module: str, leaf: str) -> tuple[str, Any]:
  """Our TemporalEncoder sub-module + leaf -> (original key, transform)."""
  if module == "expand_conv":
    return f"{prefix}expand_conv.weight", _conv_kernel
  if module == "expand_bn":
    return _bn_source(f"{prefix}expand_bn", leaf)
  if module == "shrink":
    return (f"{prefix}shrink.weight", _pointwise_kernel) if leaf == "kernel" else (
        f"{prefix}shrink.bias", _identity)
  match = re.fullmatch(r"block_(\d+)_(conv|pointwise)(_bn)?", module)
  if not match:
    raise KeyError(module)
  index = 2 * int(match.group(1)) + (match.group(2) == "pointwise")
  if match.group(3):
    return _bn_source(f"{prefix}layers_bn.{index}", leaf)
  transform = _conv_kernel if match.group(2) == "conv" else _pointwise_kernel
  return f"{prefix}layers_conv.{index}.weight", transform


def _fc_block_source(prefix: str, module: str, leaf: str) -> tuple[str, Any]:
  """Our FCBlock sub-module + leaf -> (original key, transform)."""
  match = re.fullmatch(r"(fc_in|fc_out|block_(\d+)_dense_([12]))(_bn)?", module)
  if not match:
    raise KeyError(module)
  if match.group(1) == "fc_in":
    base, bn = f"{prefix}.fc_1", f"{prefix}.bn_1"
  elif match.group(1) == "fc_out":
    base, bn = f"{prefix}.fc_2", None
  else:
    block, k = match.group(2), match.group(3)
    base, bn = f"{prefix}.layers.{block}.w{k}", f"{prefix}.layers.{block}.batch_norm{k}"
  if match.group(4):
    return _bn_source(bn, leaf)
  return (f"{base}.weight", _linear_kernel) if leaf == "kernel" else (f"{base}.bias", _identity)


def _rie_source(path: tuple[str, ...]) -> tuple[str, Any]:
  top, module, leaf = path[0], path[1], path[-1]
  if top == "global_encoder":
    return _fc_block_source("GlobalInfo", module, leaf)
  kind, group = re.fullmatch(r"(local_encoder|fusion|decoder)_(\w+)", top).groups()
  if kind == "local_encoder":
    return _temporal_encoder_source(f"LocalLayer_{_RIE_GROUP_PREFIX[group]}.", module, leaf)
  if kind == "fusion":
    return _fc_block_source(f"FuseBlocks.{GROUP_NAMES.index(group)}", module, leaf)
  return _fc_block_source(f"Integration_{_RIE_GROUP_PREFIX[group]}", module, leaf)


def _tcn_source(path: tuple[str, ...]) -> tuple[str, Any]:
  return _temporal_encoder_source("", path[1], path[-1])


def _strip_data_parallel(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  keys = list(state_dict)
  prefix = "module." if keys and all(k.startswith("module.") for k in keys) else ""
  return {k[len(prefix):]: np.asarray(v) for k, v in state_dict.items()}


def _map_state_dict(state_dict: Mapping[str, Any], expected: Any, source_of, what: str) -> dict:
  """Fills `expected` (a tree of ShapeDtypeStructs) from the original state dict."""
  state = _strip_data_parallel(state_dict)
  used, missing, mismatched, out = set(), [], [], {}
  for path, spec in flax.traverse_util.flatten_dict(flax.core.unfreeze(expected)).items():
    key, transform = source_of(path[1:])
    if key not in state:
      missing.append(f"{key} (for {'/'.join(path)}, shape {tuple(spec.shape)})")
      continue
    used.add(key)
    value = transform(state[key])
    if tuple(value.shape) != tuple(spec.shape):
      mismatched.append(f"{key}: original shape {tuple(state[key].shape)} -> {tuple(value.shape)}, "
                        f"expected {tuple(spec.shape)} for {'/'.join(path)}")
      continue
    out[path] = np.asarray(value, dtype=spec.dtype)
  unexpected = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
  problems = ([f"missing {m}" for m in missing] + [f"mis-shaped {m}" for m in mismatched]
              + [f"unexpected {u}" for u in unexpected])
  if problems:
    shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more"
                                            if len(problems) > 20 else "")
    raise ValueError(f"the {what} state dict does not match the model ({len(problems)} problems; "
                     f"check the stage, latent dimension, channels and filter widths):\n  {shown}")
  return flax.traverse_util.unflatten_dict(out)


def _expected_variables(model, field: int) -> Any:
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(0)}
  return jax.eval_shape(lambda: model.init(rngs, jnp.zeros((1, field, 17, 2), jnp.float32)))


def infer_rie_architecture(state_dict: Mapping[str, Any]) -> dict:
  """Reads stage (1, or 3 when the Feature Fusion Module is there), latent_dim, channels and
  filter_widths off an RIE state dict."""
  state = _strip_data_parallel(state_dict)
  if "LocalLayer_Torso.expand_conv.weight" not in state:
    raise ValueError("not an RIE state dict: no 'LocalLayer_Torso.expand_conv.weight' key")
  widths = [state["LocalLayer_Torso.expand_conv.weight"].shape[2]]
  i = 0
  while f"LocalLayer_Torso.layers_conv.{2 * i}.weight" in state:
    widths.append(state[f"LocalLayer_Torso.layers_conv.{2 * i}.weight"].shape[2])
    i += 1
  return dict(stage=3 if any(k.startswith("FuseBlocks.") for k in state) else 1,
              latent_dim=int(state["LocalLayer_Torso.shrink.weight"].shape[0]),
              channels=int(state["LocalLayer_Torso.expand_conv.weight"].shape[0]),
              filter_widths=tuple(int(w) for w in widths))


def infer_tcn_architecture(state_dict: Mapping[str, Any]) -> dict:
  """Reads channels, filter_widths and num_joints_out off a VideoPose3D state dict."""
  state = _strip_data_parallel(state_dict)
  if "expand_conv.weight" not in state:
    raise ValueError("not a VideoPose3D state dict: no 'expand_conv.weight' key")
  widths = [state["expand_conv.weight"].shape[2]]
  i = 0
  while f"layers_conv.{2 * i}.weight" in state:
    widths.append(state[f"layers_conv.{2 * i}.weight"].shape[2])
    i += 1
  return dict(channels=int(state["expand_conv.weight"].shape[0]),
              filter_widths=tuple(int(w) for w in widths),
              num_joints_out=int(state["shrink.weight"].shape[0]) // 3)


def convert_rie(state_dict: Mapping[str, Any], model: RIE) -> dict:
  """RIE `model_pos` state dict -> {'params': ..., 'batch_stats': ...} for `model`."""
  field = int(np.prod(model.filter_widths))
  return _map_state_dict(state_dict, _expected_variables(model, field), _rie_source, "RIE")


def convert_tcn(state_dict: Mapping[str, Any], model: TemporalConvNet) -> dict:
  """VideoPose3D `model_pos` state dict -> {'params': ..., 'batch_stats': ...} for `model`."""
  field = int(np.prod(model.filter_widths))
  return _map_state_dict(state_dict, _expected_variables(model, field), _tcn_source, "VideoPose3D")


# --- reading the .bin / .pth files ----------------------------------------------------------


def load_original_state_dict(path: str | os.PathLike, key: str = "model_pos") -> dict[str, np.ndarray]:
  """Reads an original checkpoint (.bin/.pth) and returns its `key` state dict as numpy arrays.

  PyTorch is not needed: `torch_pickle.read_checkpoint` reads the file, admitting numpy's
  RandomState (stored by the originals next to the weights) but nothing executable. A file
  that is itself a state dict (no `key`) is returned whole.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint {path!r} does not exist")
  checkpoint = torch_pickle.read_checkpoint(path)
  state = checkpoint[key] if key in checkpoint else checkpoint
  if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
    raise InputError(f"{path!r} has no state dict of tensors under {key!r} "
                     f"(top level: {list(checkpoint)[:10]}); expected an RIE / VideoPose3D "
                     "checkpoint saved by their run.py")
  return dict(state)
