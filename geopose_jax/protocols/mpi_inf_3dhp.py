"""The MPI-INF-3DHP test-set protocol, as the official MATLAB evaluation computes it.

Official code (test set release, `test_util/`): `mpii_test_predictions.m` centres the
ground truth on the pelvis (joint 15 of 17, 1-based) and takes per-joint Euclidean errors
over the valid frames; `mpii_evaluate_errors.m` aggregates them per sequence (TS1-TS6), per
activity (the 7 of `mpii_get_activity_name.m`) and over all frames; `mpii_compute_3d_pck.m`
gives, per joint group of `mpii_get_pck_auc_joint_groups.m`:
  PCK = % of (joint, frame) errors < 150 mm, AUC = mean of the PCK curve over the 31
  thresholds 0, 5, ..., 150 mm, and "Total" = the joint-count-weighted mean over the groups,
  i.e. the mean over every (joint, frame) of the grouped joints. "<" is strict.
MPJPE is the mean error over all 17 joints (pelvis included, its error is zero after
centring) whatever the grouping, as in `mpii_evaluate_errors.m`.

Groupings (`GROUPINGS`), both in use in the literature:
  "all17"  the release's own `mpii_get_pck_auc_joint_groups.m`: Head = head top + head,
           Neck, Shoulder, Elbow, Wrist, Spine, Hip = both hips + pelvis, Knee, Ankle
           (17 joints);
  "no_torso14"  the 14 joints without pelvis, spine and head (the grouping with those
           three commented out, used e.g. by the PoseFormerV2 / P-STMO evaluations).

Both predictions and targets are centred on their own pelvis here (the official script
expects the prediction already root-relative). Inputs are in millimetres, in the
Human3.6M-17 order the models predict (`joint_order="h36m"`, mapped with
`skeleton.H36M_TO_MPI3DHP`) or in the test set's own order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geopose_jax import metrics
from geopose_jax import skeleton
from geopose_jax.errors import ConfigError, InputError

SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
# activity_annotation codes 1..7 of the test set (mpii_get_activity_name.m).
ACTIVITY_NAMES = ("Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching",
                  "On The Floor", "Sports", "Miscellaneous")
ANNOTATIONS = ("univ_annot3", "annot3")
DEFAULT_ANNOTATION = "univ_annot3"
# Joint groups as (name, indices in the 3DHP test order, 0-based).
GROUPINGS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "all17": (("Head", (0, 16)), ("Neck", (1,)), ("Shoulder", (2, 5)), ("Elbow", (3, 6)),
              ("Wrist", (4, 7)), ("Spine", (15,)), ("Hip", (8, 11, 14)), ("Knee", (9, 12)),
              ("Ankle", (10, 13))),
    "no_torso14": (("Head", (0,)), ("Neck", (1,)), ("Shoulder", (2, 5)), ("Elbow", (3, 6)),
                   ("Wrist", (4, 7)), ("Hip", (8, 11)), ("Knee", (9, 12)),
                   ("Ankle", (10, 13))),
}
DEFAULT_GROUPING = "all17"
GROUPING_TITLES = {"all17": "all 17 joints (official grouping)",
                   "no_torso14": "14 joints (no pelvis, spine, head)"}
JOINT_ORDERS = ("h36m", "mpi_inf_3dhp")


def activity_name(code: int) -> str:
  """1..7 activity_annotation code -> its official name."""
  if not 1 <= int(code) <= len(ACTIVITY_NAMES):
    raise InputError(f"MPI-INF-3DHP activity code {code} is outside 1..{len(ACTIVITY_NAMES)}")
  return ACTIVITY_NAMES[int(code) - 1]


def grouping_joints(grouping: str) -> tuple[int, ...]:
  """The 3DHP-order joints a grouping scores, in group order."""
  return tuple(j for _, joints in _groups(grouping) for j in joints)


def _groups(grouping: str):
  if grouping not in GROUPINGS:
    raise ConfigError(f"unknown MPI-INF-3DHP joint grouping {grouping!r}; choose one of "
                      f"{sorted(GROUPINGS)}")
  return GROUPINGS[grouping]


def to_3dhp_order(pose: np.ndarray, joint_order: str) -> np.ndarray:
  """(N, 17, 3) in `joint_order` -> (N, 17, 3) float64 in the test set's order."""
  if joint_order not in JOINT_ORDERS:
    raise ConfigError(f"unknown joint order {joint_order!r}; expected one of {JOINT_ORDERS}")
  pose = np.asarray(pose, np.float64)
  if pose.ndim != 3 or pose.shape[1:] != (17, 3):
    raise InputError(f"MPI-INF-3DHP poses must be (N, 17, 3) millimetres, got {pose.shape}")
  return skeleton.h36m_to_mpi3dhp(pose) if joint_order == "h36m" else pose


def _scores(pred: np.ndarray, target: np.ndarray, joints: Sequence[int]) -> dict[str, float]:
  """PCK, AUC (over `joints`) and MPJPE (all 17) of (n, 17, 3) 3DHP-order poses."""
  root = skeleton.MPI3DHP_ROOT
  return {
      "PCK": float(np.mean(metrics.pck(pred, target, metrics.PCK_THRESHOLD_MM, root, joints))),
      "AUC": float(np.mean(metrics.auc(pred, target, metrics.AUC_THRESHOLDS_MM, root, joints))),
      "MPJPE": float(np.mean(metrics.mpjpe(pred, target, root))),
      "num_frames": int(len(pred)),
  }


def evaluate(pred_mm, target_mm, sequences, activities, valid=None, *,
             grouping: str = DEFAULT_GROUPING, joint_order: str = "h36m",
             annotation: str = DEFAULT_ANNOTATION, decimals: int = 1) -> dict[str, Any]:
  """The 3DHP tables: per sequence, per activity, per joint group, and the totals.

  Args:
    pred_mm: (N, 17, 3) predicted 3D poses, mm (any root; each is centred on its pelvis).
    target_mm: (N, 17, 3) ground truth (`univ_annot3` for the standard protocol), mm.
    sequences: (N,) sequence names ("TS1".."TS6").
    activities: (N,) activity codes 1..7 or names from `ACTIVITY_NAMES`.
    valid: (N,) bool, the test set's valid_frame; None = every frame is scored.
    grouping: a key of `GROUPINGS`.
    joint_order: "h36m" (the models' order) or "mpi_inf_3dhp" (the test set's).
    annotation: which ground truth `target_mm` is; recorded in the result.
    decimals: rounding of the reported values.

  Returns:
    {"protocol", "annotation", "grouping", "grouping_title", "joints", "PCK", "AUC",
     "MPJPE", "num_frames", "per_sequence": {TS: {PCK, AUC, MPJPE, num_frames}},
     "per_activity": {name: {...}}, "per_group": {group: {PCK, AUC}}}. Sequences and
    activities without a scored frame are left out. Totals are over all scored frames
    (the official "All" row), not means of the per-sequence values.
  """
  if annotation not in ANNOTATIONS:
    raise ConfigError(f"unknown MPI-INF-3DHP annotation {annotation!r}; expected one of "
                      f"{ANNOTATIONS}")
  groups = _groups(grouping)
  pred, target = to_3dhp_order(pred_mm, joint_order), to_3dhp_order(target_mm, joint_order)
  n = len(target)
  if len(pred) != n:
    raise InputError(f"MPI-INF-3DHP evaluation: {len(pred)} predictions for {n} targets")
  sequences = np.asarray([str(s) for s in np.asarray(sequences).reshape(-1)])
  activities = np.asarray(activities).reshape(-1)
  keep = np.ones(n, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
  for what, array in (("sequences", sequences), ("activities", activities), ("valid", keep)):
    if len(array) != n:
      raise InputError(f"MPI-INF-3DHP evaluation: {what} has {len(array)} entries for {n} "
                       "frames")
  if not keep.any():
    raise InputError("MPI-INF-3DHP evaluation: no valid frame to score")
  # Invalid frames carry no activity (code 0 in the release); only scored frames need one.
  pred, target = pred[keep], target[keep]
  sequences, activities = sequences[keep], _activity_names(activities[keep])
  joints = grouping_joints(grouping)
  result: dict[str, Any] = {
      "protocol": "mpi_inf_3dhp", "annotation": annotation, "grouping": grouping,
      "grouping_title": GROUPING_TITLES[grouping],
      "joints": [skeleton.MPI3DHP_JOINT_NAMES[j] for j in joints]}
  result.update(_rounded(_scores(pred, target, joints), decimals))
  order = list(SEQUENCES) + sorted(set(sequences) - set(SEQUENCES))
  result["per_sequence"] = {s: _rounded(_scores(pred[sequences == s], target[sequences == s],
                                                joints), decimals)
                            for s in order if np.any(sequences == s)}
  result["per_activity"] = {a: _rounded(_scores(pred[activities == a],
                                                target[activities == a], joints), decimals)
                            for a in ACTIVITY_NAMES if np.any(activities == a)}
  per_group = {}
  for name, group in groups:
    scores = _scores(pred, target, group)
    per_group[name] = _rounded({"PCK": scores["PCK"], "AUC": scores["AUC"]}, decimals)
  result["per_group"] = per_group
  return result


def _activity_names(activities) -> np.ndarray:
  activities = np.asarray(activities).reshape(-1)
  if np.issubdtype(activities.dtype, np.number):
    return np.asarray([activity_name(int(a)) for a in activities])
  names = np.asarray([a.decode() if isinstance(a, bytes) else str(a) for a in activities])
  unknown = sorted(set(names) - set(ACTIVITY_NAMES))
  if unknown:
    raise InputError(f"unknown MPI-INF-3DHP activities {unknown}; expected codes 1..7 or "
                     f"names {ACTIVITY_NAMES}")
  return names


def _rounded(scores: dict, decimals: int) -> dict:
  return {k: (v if isinstance(v, int) else float(round(v, decimals))) for k, v in scores.items()}


def format_markdown(result: dict[str, Any]) -> str:
  """An `evaluate` result as Markdown: the sequence table, the activity table, the groups."""
  title = (f"MPI-INF-3DHP, {result['annotation']}, PCK@150mm / AUC over "
           f"{result['grouping_title']}; MPJPE over all 17 joints (mm)")
  lines = [f"**{title}**", "", "| sequence | PCK | AUC | MPJPE | frames |",
           "|---|---:|---:|---:|---:|"]

  def row(name, entry):
    return (f"| {name} | {entry['PCK']:.1f} | {entry['AUC']:.1f} | {entry['MPJPE']:.1f} | "
            f"{entry['num_frames']} |")

  lines += [row(s, e) for s, e in result["per_sequence"].items()]
  lines += [row("**all**", result), "", "| activity | PCK | AUC | MPJPE | frames |",
            "|---|---:|---:|---:|---:|"]
  lines += [row(a, e) for a, e in result["per_activity"].items()]
  lines += [row("**all**", result), "", "| joint group | PCK | AUC |", "|---|---:|---:|"]
  lines += [f"| {g} | {e['PCK']:.1f} | {e['AUC']:.1f} |" for g, e in result["per_group"].items()]
  lines.append(f"| **total** | {result['PCK']:.1f} | {result['AUC']:.1f} |")
  return "\n".join(lines) + "\n"
