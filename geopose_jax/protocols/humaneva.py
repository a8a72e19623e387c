"""The HumanEva-I table lifting papers report (VideoPose3D, RIE): per action and subject.

Errors over HumanEva's 15 joints of root-relative poses (root = pelvis): Protocol #1 MPJPE
and Protocol #2 PA-MPJPE (after the best similarity fit), frame means within each
(action, subject) of the Validate chunks, and the unweighted mean over those cells as the
average, as VideoPose3D's per-action evaluation does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geopose_jax import metrics
from geopose_jax import skeleton
from geopose_jax.errors import InputError

ACTIONS = ("Walk", "Jog", "Box", "ThrowCatch", "Gestures")
SUBJECTS = ("S1", "S2", "S3")


def evaluate(pred_mm, target_mm, subjects, actions, decimals: int = 1) -> dict[str, Any]:
  """Per (action, subject) and average MPJPE / PA-MPJPE.

  Args:
    pred_mm, target_mm: (N, 15, 3) HumanEva-15 poses in mm (H36M-17 predictions go through
      skeleton.h36m_to_humaneva first).
    subjects: (N,) "S1".."S3" (a "Validate/" prefix is dropped).
    actions: (N,) canonical actions ("Walk", "Jog", "Box", ...).

  Returns:
    {"protocol": "humaneva", "mpjpe", "pa_mpjpe", "num_frames",
     "per_action": {"Walk S1": {"mpjpe", "pa_mpjpe", "num_frames"}, ...}} in action then
    subject order; the keys fit metrics.format_table.
  """
  pred, target = np.asarray(pred_mm, np.float64), np.asarray(target_mm, np.float64)
  shape = (skeleton.HUMANEVA_NUM_JOINTS, 3)
  if pred.ndim != 3 or pred.shape[1:] != shape or pred.shape != target.shape:
    raise InputError(f"HumanEva evaluation needs (N, 15, 3) predictions and targets in mm, got "
                     f"{pred.shape} and {target.shape}")
  n = len(pred)
  subjects = np.asarray([str(s).rpartition("/")[2] for s in np.asarray(subjects).reshape(-1)])
  actions = np.asarray([str(a) for a in np.asarray(actions).reshape(-1)])
  if len(subjects) != n or len(actions) != n:
    raise InputError(f"HumanEva evaluation: {len(subjects)} subjects and {len(actions)} "
                     f"actions for {n} frames")
  errors = {"mpjpe": np.asarray(metrics.mpjpe(pred, target, skeleton.HUMANEVA_ROOT)),
            "pa_mpjpe": np.asarray(metrics.pa_mpjpe(pred, target))}
  cells = [(a, s) for a in list(ACTIONS) + sorted(set(actions) - set(ACTIONS))
           for s in list(SUBJECTS) + sorted(set(subjects) - set(SUBJECTS))
           if np.any((actions == a) & (subjects == s))]
  if not cells:
    raise InputError("HumanEva evaluation: no frames")
  per_action, means = {}, {k: [] for k in errors}
  for action, subject in cells:
    chosen = (actions == action) & (subjects == subject)
    entry = {}
    for key, values in errors.items():
      mean = float(np.mean(values[chosen]))
      means[key].append(mean)
      entry[key] = round(mean, decimals)
    entry["num_frames"] = int(np.sum(chosen))
    per_action[f"{action} {subject}"] = entry
  result: dict[str, Any] = {"protocol": "humaneva"}
  result.update({k: round(float(np.mean(v)), decimals) for k, v in means.items()})
  result["num_frames"] = n
  result["per_action"] = per_action
  return result
