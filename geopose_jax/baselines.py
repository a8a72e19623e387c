"""Trivial baselines that a pose model must beat, scored by the one evaluator.

    mean_pose_baseline(train_poses, test_poses, ...)
        predicts the mean root-relative training pose for every test frame (what a pose
        head that ignores its input would learn under an L2 loss).

The lifters' own baseline, the constant-depth lift, is in their evaluation
(`constant_depth_*` in the lifter's tables).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geopose_jax import evaluation
from geopose_jax.errors import InputError


def mean_root_relative_pose(poses: np.ndarray) -> np.ndarray:
  """`(N, J, 3)` poses -> `(J, 3)` mean of the poses centred on their root joint (joint 0)."""
  poses = np.asarray(poses, np.float64)
  if poses.ndim != 3 or poses.shape[-1] != 3 or not len(poses):
    raise InputError(f"training poses must be a non-empty (N, J, 3) array, got {poses.shape}")
  if not np.all(np.isfinite(poses)):
    raise InputError("training poses hold NaN or Inf")
  return np.mean(poses - poses[:, :1], axis=0)


def mean_pose_baseline(train_poses: np.ndarray, test_poses: np.ndarray,
                       sequence: np.ndarray | None = None,
                       info: evaluation.SequenceInfo | None = None,
                       convention: evaluation.Convention = evaluation.Convention(),
                       decimals: int = 1) -> dict[str, Any]:
  """The evaluator's table for predicting the mean training pose on every test frame.

  Args:
    train_poses: (N, J, 3) training poses (any root position; units as the table's).
    test_poses: (M, J, 3) test poses, same frame and units (e.g. camera frame, mm).
    sequence: (M,) codes into `info`, the sequence of each test frame; default one
      sequence, action 'all'.
    info: the sequences' labels and actions.
    convention: how predictions are compared (`evaluation.Convention`).

  Returns:
    `evaluation.summarize`'s table (mpjpe, n_mpjpe, pa_mpjpe, pck, auc, per_action,
    per_sequence, convention), plus `baseline` naming what was predicted.
  """
  test_poses = np.asarray(test_poses, np.float64)
  mean = mean_root_relative_pose(train_poses)
  if test_poses.ndim != 3 or test_poses.shape[1:] != mean.shape:
    raise InputError(f"test poses {test_poses.shape} must be (M, {mean.shape[0]}, 3) like the "
                     f"training poses")
  if sequence is None:
    sequence = np.zeros(len(test_poses), np.int64)
    info = evaluation.SequenceInfo(labels=("all",), actions=("all",))
  elif info is None:
    raise InputError("mean_pose_baseline: `sequence` codes need the `info` they index")
  predicted = np.broadcast_to(mean, test_poses.shape)
  table = evaluation.summarize(evaluation.frame_errors(predicted, test_poses, convention),
                               sequence, info, convention, decimals)
  table["baseline"] = f"mean root-relative pose of {len(train_poses)} training frames"
  return table
