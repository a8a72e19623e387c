"""A trained temporal lifter (RIE, or the VideoPose3D TCN) applied to windows of 2D poses.

`make_predict_windows` jits the model's inference over the data sharding with the test-time
flip average; `predict_keypoints` runs it over a user's keypoint sequence one window per
frame; `sequences_of` / `find_sequence` read a pose table's sequences for evaluation and
pictures. Used by tasks/rie.py (both models).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from geopose_jax import evaluation
from geopose_jax import keypoints
from geopose_jax import skeleton
from geopose_jax.data import poses as poses_data
from geopose_jax.models import rie as rie_lib
from geopose_jax.train import prediction
from geopose_jax.train.task import Runtime


def sequences_of(table: poses_data.PoseTable) -> list[evaluation.Sequence2D]:
  """Every sequence of a pose table: normalised 2D and root-relative 3D (metres)."""
  out = []
  for s in range(len(table.names)):
    frames = slice(table.start[s], table.start[s] + table.length[s])
    pose_3d = table.pose_3d_cam[frames]
    out.append(evaluation.Sequence2D(pose_2d=table.pose_2d[frames],
                                     pose_3d=pose_3d - pose_3d[:, :1], code=s))
  return out


def find_sequence(table: poses_data.PoseTable, subject: str, action: str,
                  camera: int) -> int:
  """The index of the (first) sequence with this subject, action and camera index."""
  for s, (seq_subject, seq_action, _, _) in enumerate(table.names):
    if seq_subject == subject and seq_action == action and int(table.camera[s]) == camera:
      return s
  have = sorted({(n[0], n[1]) for n in table.names})
  raise ValueError(f"no sequence of subject {subject!r}, action {action!r}, camera "
                   f"{camera}; set --config.viz.subject/action/camera to one of {have}")


def make_predict_windows(model, runtime: Runtime, test_time_flip: bool,
                         joints: int = rie_lib.NUM_JOINTS):
  """(variables, (B, T, J, 2) numpy windows, B a multiple of the device count) ->
  (B, J, 3) numpy predictions, flip-averaged (in the layout of J joints) if asked."""
  flip = functools.partial(skeleton.flip_pose, permutation=skeleton.flip_permutation(joints))

  def predict(variables, pose_2d):
    plain = lambda x: model.apply(variables, x, train=False)[:, 0]  # noqa: E731
    if test_time_flip:
      return evaluation.flip_average(plain, flip, flip)(pose_2d)
    return plain(pose_2d)

  with runtime.mesh:
    jitted = jax.jit(predict, in_shardings=(runtime.replicated, runtime.data_sharding),
                     out_shardings=runtime.replicated)

  def run(variables, windows: np.ndarray) -> np.ndarray:
    local = len(windows) // runtime.process_count
    mine = windows[runtime.process_index * local:(runtime.process_index + 1) * local]
    x = jax.make_array_from_process_local_data(runtime.data_sharding,
                                               np.asarray(mine, np.float32))
    with runtime.mesh:
      return np.asarray(jax.device_get(jitted(variables, x)))

  return run


def predict_keypoints(sequence, *, predict_windows, make_windows, runtime: Runtime,
                      batch_size: int, progress: bool) -> dict[str, np.ndarray]:
  """A user's keypoint sequence -> {'pose_3d_mm': (N, 17, 3)}: one window per frame, made
  `batch_size` at a time (memory does not grow with the sequence beyond its arrays)."""
  pose_2d = keypoints.normalized_pose_2d(sequence)
  poses = prediction.predict_in_chunks(
      predict_windows, len(pose_2d), lambda frames: make_windows(pose_2d, frames),
      batch_size=batch_size, num_devices=runtime.mesh.devices.size,
      progress=progress and runtime.process_index == 0, desc=f"lift {sequence.name}")
  return {"pose_3d_mm": 1000.0 * poses}
