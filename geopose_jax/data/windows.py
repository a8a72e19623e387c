"""Temporal windows of 2D poses, for every temporal lifter (RIE, the VideoPose3D TCN), in
training and in evaluation.

A window of T frames (the receptive field, odd) is centred on its target frame: index T // 2
(or, causal, ends on it: index T - 1). Near a sequence's ends the first/last frame is
repeated (edge padding), as VideoPose3D and RIE do, so every frame has a window.

`window_indices` is the one definition; `sequence_windows` cuts the windows of chosen
frames out of one sequence (evaluation, prediction), `temporal_windows` is the training and
evaluation loader over a whole split.
"""

from __future__ import annotations

import grain
import ml_collections
import numpy as np

from geopose_jax import skeleton
from geopose_jax.data import batching
from geopose_jax.data import poses as poses_data

def _check_receptive_field(receptive_field: int) -> None:
  if receptive_field < 1 or receptive_field % 2 == 0:
    raise ValueError(f"receptive field {receptive_field} must be a positive odd number "
                     "(config.data.receptive_field)")


def window_indices(frame: np.ndarray, start: np.ndarray, length: np.ndarray,
                   receptive_field: int, causal: bool = False) -> np.ndarray:
  """Edge-padded window of frame numbers around (or, causal, up to) each target frame.

  Args:
    frame: (B,) target frames (numbers in a concatenation of sequences).
    start: (B,) first frame of each target's sequence.
    length: (B,) frames in that sequence.
    receptive_field: T, odd.
    causal: the window ends at the target instead of being centred on it.

  Returns:
    (B, T) frame numbers; column T // 2 (causal: T - 1) is `frame`; columns before the
    sequence's first frame repeat it, columns after its last frame repeat that.
  """
  _check_receptive_field(receptive_field)
  half = receptive_field // 2
  offsets = np.arange(1 - receptive_field, 1) if causal else np.arange(-half, half + 1)
  local = np.asarray(frame)[:, None] - np.asarray(start)[:, None] + offsets
  local = np.clip(local, 0, np.asarray(length)[:, None] - 1)
  return np.asarray(start)[:, None] + local


def sequence_windows(sequence: np.ndarray, frames: np.ndarray, receptive_field: int,
                     causal: bool = False) -> np.ndarray:
  """`(N, ...)` one sequence, `(F,)` target frames -> `(F, T, ...)` edge-padded windows."""
  frames = np.asarray(frames, np.int64)
  zeros = np.zeros_like(frames)
  indices = window_indices(frames, zeros, np.full_like(frames, len(sequence)),
                           receptive_field, causal)
  return sequence[indices]


def _windows(batch, *, table: poses_data.PoseTable, receptive_field: int, causal: bool
             ) -> batching.Record:
  frame = batch["index"]
  sequence = table.sequence_of_frame[frame]
  indices = window_indices(frame, table.start[sequence], table.length[sequence],
                           receptive_field, causal)
  pose_2d = table.pose_2d[indices]                           # (B, T, J, 2)
  pose_3d = table.pose_3d_cam[frame]
  pose_3d = pose_3d - pose_3d[:, :1]                         # root-relative, metres
  if "flip" in batch:
    flip = np.asarray(batch["flip"], bool)
    permutation = skeleton.flip_permutation(pose_2d.shape[-2])
    pose_2d[flip] = skeleton.flip_pose(pose_2d[flip], permutation)
    pose_3d[flip] = skeleton.flip_pose(pose_3d[flip], permutation)
  out = {"pose_2d": pose_2d.astype(np.float32), "pose_3d": pose_3d.astype(np.float32),
         "subject": table.subject[sequence], "action": table.action[sequence],
         "camera": table.camera[sequence], "sequence": sequence.astype(np.int32)}
  if "valid" in batch:
    out["valid"] = batch["valid"]
  return out


def temporal_windows(data_config: ml_collections.ConfigDict, *, receptive_field: int,
                     split: str = "train", global_batch_size: int = 1024,
                     process_index: int = 0, process_count: int = 1, seed: int = 0,
                     shuffle: bool = True, num_epochs: int | None = None, flip: bool = False,
                     causal: bool = False) -> grain.DataLoader:
  """One window per frame of every (subject, sequence, camera) of the split.

  Args (besides those every loader takes, see geopose_jax/data/multiview.py):
    receptive_field: T, odd.
    flip: mirror half of the windows at random (2D and 3D together, with
      skeleton.flip_pose in the split's layout, H36M-17 or HumanEva-15): the training
      augmentation; evaluation leaves it False and
      averages over flips itself.
    causal: windows end at their target frame (index T - 1) instead of centring on it.

  Batch (B = global_batch_size / process_count):
    pose_2d (B, T, J, 2) f32 normalised screen coordinates, edge padded, target at T // 2
      (causal: T - 1); J = 17 (H36M order) or 15 (HumanEva-I);
    pose_3d (B, J, 3) f32 the target frame's root-relative camera-frame pose in METRES;
    subject, action, camera, sequence (B,) int32 (codes into the table's
      subject_names / action_names; sequence indexes its names); + valid (B,) bool for a finite pass.
  """
  _check_receptive_field(receptive_field)
  local = batching.local_batch_size(global_batch_size, process_count)
  table = poses_data.load_poses(data_config, split)
  return batching.make_batch_loader(
      table.num_frames, data_config=data_config, batch_size=local,
      batch_ops=[batching.FnMap(_windows, table=table, receptive_field=receptive_field,
                                causal=causal)],
      process_index=process_index, process_count=process_count, seed=seed,
      shuffle=shuffle, num_epochs=num_epochs, draw_flips=flip)
