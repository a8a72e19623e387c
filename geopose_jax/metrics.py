"""3D pose metrics and the Human3.6M per-action protocol.

Per-sample metrics take (..., J, 3) predictions and targets and return (...,) values in the
inputs' units (mm in, mm out; PCK and AUC in percent). They work on numpy arrays (evaluation
runs on the host) and on JAX arrays (returning JAX arrays, jit-able).
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geopose_jax.data import vocab
from geopose_jax.geometry._array import as_float_array, namespace
from geopose_jax.geometry.procrustes import procrustes_align

# MPI-INF-3DHP's PCK/AUC convention: PCK at 150 mm, AUC over thresholds 0, 5, ..., 150 mm.
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = tuple(5.0 * i for i in range(31))


def _root_relative(pose, root):
  if root is None:
    return pose
  return pose - pose[..., root:root + 1, :]


def _check_shapes(pred, target):
  if pred.shape != target.shape or pred.ndim < 2:
    raise ValueError(f"pred and target must have the same shape (..., J, D); got "
                     f"{pred.shape} and {target.shape}")


def joint_errors(pred, target, root: int | None = 0):
  """(..., J, D) x2 -> (..., J) Euclidean error per joint, after centring both on `root`.

  root=None compares absolute positions.
  """
  xp = namespace(pred, target)
  pred, target = as_float_array(xp, pred), as_float_array(xp, target)
  _check_shapes(pred, target)
  diff = _root_relative(pred, root) - _root_relative(target, root)
  return xp.sqrt(xp.sum(diff * diff, axis=-1))


def mpjpe(pred, target, root: int | None = 0):
  """Mean per-joint position error (Protocol #1) of root-relative poses, (...,).

  The root's error is zero after centring and is included in the mean over all J joints,
  as in the standard protocol.
  """
  xp = namespace(pred, target)
  return xp.mean(joint_errors(pred, target, root), axis=-1)


def n_mpjpe(pred, target, root: int | None = 0, exclude_root_from_mean: bool = True):
  """Scale-normalised MPJPE as in Rhodin et al. 2018's evaluation code, (...,).

  Both poses are centred on the root; the prediction is scaled by the least-squares factor
  s = <p, g> / <p, p> over all J*3 coordinates of the sample; the error is the mean over
  joints of |s p_j - g_j|.

  exclude_root_from_mean (default True, the original's convention): the original multiplies
  the mean over J joints by J / (J - 1) (17/16 for H36M), i.e. averages over the J - 1
  non-root joints only, so the always-zero root does not dilute the error. Set False for a
  plain mean over all J joints, comparable with `mpjpe`. Requires `root` when True.
  """
  xp = namespace(pred, target)
  pred, target = as_float_array(xp, pred), as_float_array(xp, target)
  _check_shapes(pred, target)
  p, g = _root_relative(pred, root), _root_relative(target, root)
  scale = xp.sum(p * g, axis=(-2, -1)) / xp.maximum(xp.sum(p * p, axis=(-2, -1)), 1e-12)
  diff = scale[..., None, None] * p - g
  error = xp.mean(xp.sqrt(xp.sum(diff * diff, axis=-1)), axis=-1)
  if exclude_root_from_mean:
    if root is None:
      raise ValueError("n_mpjpe: exclude_root_from_mean=True needs a root joint index")
    num_joints = pred.shape[-2]
    error = error * (num_joints / (num_joints - 1))
  return error


def pa_mpjpe(pred, target):
  """Procrustes-aligned MPJPE (Protocol #2): error after the best similarity fit, (...,)."""
  xp = namespace(pred, target)
  pred, target = as_float_array(xp, pred), as_float_array(xp, target)
  _check_shapes(pred, target)
  aligned = procrustes_align(pred, target, scale=True)
  return xp.mean(joint_errors(aligned, target, root=None), axis=-1)


def _selected_errors(pred, target, root, joints):
  errors = joint_errors(pred, target, root)
  return errors if joints is None else errors[..., list(joints)]


def pck(pred, target, threshold: float = PCK_THRESHOLD_MM, root: int | None = 0,
        joints: Sequence[int] | None = None):
  """Percentage of joints whose root-relative error is below `threshold`, (...,) in [0, 100].

  As MPI-INF-3DHP's evaluation code, "below" is strict (error < threshold). All J joints
  count unless `joints` selects some (e.g. to leave out the root, whose error is zero after
  centring).
  """
  xp = namespace(pred, target)
  errors = _selected_errors(pred, target, root, joints)
  return 100.0 * xp.mean((errors < threshold).astype(errors.dtype), axis=-1)


def auc(pred, target, thresholds=AUC_THRESHOLDS_MM, root: int | None = 0,
        joints: Sequence[int] | None = None):
  """Area under the PCK curve: mean PCK over `thresholds` (0, 5, ..., 150 mm), (...,) in %."""
  xp = namespace(pred, target)
  errors = _selected_errors(pred, target, root, joints)
  thresholds = xp.asarray(thresholds, dtype=errors.dtype)
  below = (errors[..., None] < thresholds).astype(errors.dtype)  # (..., J, T)
  return 100.0 * xp.mean(below, axis=(-2, -1))


def _action_names(actions) -> list[str]:
  actions = np.asarray(actions)
  if np.issubdtype(actions.dtype, np.integer):
    # Codes index each dataset's own vocabulary (PoseTable.action_names, ...): only the
    # caller can turn them into names.
    raise ValueError("h36m_protocol takes action names, not integer codes; map codes through "
                     "the loaded data's action_names first")
  return [str(a) for a in actions.reshape(-1)]


def _round(value: float, decimals: int) -> float:
  return float(round(float(value), decimals))


def h36m_protocol(errors: Mapping[str, Any], actions, decimals: int = 1) -> dict:
  """Human3.6M aggregation: frame-weighted within each action, unweighted over actions.

  Args:
    errors: metric name -> (N,) per-frame values (e.g. {"mpjpe": ..., "pa_mpjpe": ...}).
    actions: (N,) action names.
    decimals: rounding of the reported values (0.1 mm by default).

  Returns:
    {metric: mean over the actions present of each action's frame mean, ...,
     "num_frames": N,
     "per_action": {action: {metric: frame mean, ..., "num_frames": n}}}, with actions in
    vocab order (unknown names after, sorted). Overall values are computed from the
    unrounded per-action means and then rounded.
  """
  names = _action_names(actions)
  num_frames = len(names)
  if num_frames == 0:
    raise ValueError("h36m_protocol: no frames to aggregate")
  values = {}
  for metric, v in errors.items():
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape[0] != num_frames:
      raise ValueError(f"h36m_protocol: metric {metric!r} has {v.shape[0]} values for "
                       f"{num_frames} frames")
    values[metric] = v
  names_array = np.asarray(names)
  order = {name: i for i, name in enumerate(vocab.H36M_ACTIONS + vocab.LIBRARY_ACTIONS)}
  present = sorted(set(names), key=lambda a: (order.get(a, len(order)), a))
  per_action = {}
  raw_means = {metric: [] for metric in values}
  for action in present:
    selected = names_array == action
    entry = {}
    for metric, v in values.items():
      mean = float(np.mean(v[selected]))
      raw_means[metric].append(mean)
      entry[metric] = _round(mean, decimals)
    entry["num_frames"] = int(np.sum(selected))
    per_action[action] = entry
  result = {metric: _round(np.mean(means), decimals) for metric, means in raw_means.items()}
  result["num_frames"] = num_frames
  result["per_action"] = per_action
  return result


def _format_value(value: Any, decimals: int) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  value = float(value)
  # Millimetres read best at 0.1 mm; ratios and small losses need significant digits.
  return f"{value:.{decimals}f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def format_table(result: Mapping[str, Any], decimals: int = 1) -> str:
  """A `h36m_protocol`-style result as a Markdown table: one row per action, then the average.

  Only numeric top-level entries become columns; anything else (lists, nested dicts other
  than `per_action`) is left out of the table.
  """
  metrics = [k for k, v in result.items() if k not in ("num_frames", "per_action")
             and isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)]
  header = "| action | " + " | ".join(metrics) + " | frames |"
  rule = "|---|" + "---:|" * (len(metrics) + 1)
  lines = [header, rule]
  for action, entry in result.get("per_action", {}).items():
    cells = [_format_value(entry.get(m), decimals) for m in metrics]
    lines.append(f"| {action} | " + " | ".join(cells) + f" | {entry.get('num_frames', '')} |")
  cells = [_format_value(result[m], decimals) for m in metrics]
  lines.append("| **average** | " + " | ".join(cells) + f" | {result.get('num_frames', '')} |")
  return "\n".join(lines) + "\n"
