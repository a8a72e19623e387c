"""Tiny fakes of VideoPose3D's HumanEva-I files (data_3d_humaneva15.npz, data_2d_humaneva15_gt.npz).

`write_npz` writes random poses (shapes and layout only); `write_moving_body` a walking,
turning 15-joint body whose 2D is its pinhole projection through the HumanEva-I cameras,
so that a lifter can learn from it.
"""

from __future__ import annotations

import pathlib

import numpy as np

from data_prep.humaneva import calibration
from data_prep.humaneva import humaneva_dataset_builder as builder_lib
from geopose_jax import skeleton

# A standing HumanEva-15 body in metres, z up, facing -y (left joints at +x).
BODY_M = np.array([
    [0.0, 0.0, 1.00], [0.0, 0.0, 1.45], [0.18, 0.0, 1.40], [0.22, 0.0, 1.12], [0.24, 0.0, 0.88],
    [-0.18, 0.0, 1.40], [-0.22, 0.0, 1.12], [-0.24, 0.0, 0.88], [0.10, 0.0, 0.95],
    [0.10, 0.0, 0.52], [0.10, 0.0, 0.08], [-0.10, 0.0, 0.95], [-0.10, 0.0, 0.52],
    [-0.10, 0.0, 0.08], [0.0, 0.0, 1.70]])
FOCAL_PX, CENTRE_PX = 800.0, (320.0, 240.0)
# Limb joints that swing forwards (+) and backwards (-) with the gait phase.
_SWING = {3: -0.5, 4: -1.0, 6: 0.5, 7: 1.0, 9: 0.6, 10: 1.0, 12: -0.6, 13: -1.0}


def _save(folder: pathlib.Path, positions_3d: dict, positions_2d: dict) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  positions_2d = dict(positions_2d)
  positions_2d["Unlabeled/S4"] = {"Walking 1": [np.zeros((3, 15, 2), np.float32)] * 3}
  np.savez_compressed(folder / builder_lib.NPZ_3D, positions_3d=positions_3d)
  np.savez_compressed(folder / builder_lib.NPZ_2D, positions_2d=positions_2d,
                      metadata={"layout_name": "humaneva15", "num_joints": 15,
                                "keypoints_symmetry": [list(skeleton.HUMANEVA_LEFT),
                                                       list(skeleton.HUMANEVA_RIGHT)]})


def write_npz(folder: pathlib.Path, chunks: dict, seed: int = 0):
  """VideoPose3D's HumanEva layout with random poses: pickled dicts; the 2D runs 2 frames
  longer; Unlabeled/ entries exist in the 2D file only.

  Args:
    chunks: {"Train/S1": {"Walking 1 chunk0": num_frames, ...}, ...}.
  Returns:
    (positions_3d, positions_2d) as written.
  """
  rng = np.random.default_rng(seed)
  positions_3d, positions_2d = {}, {}
  for subject, sequences in chunks.items():
    positions_3d[subject], positions_2d[subject] = {}, {}
    for sequence, n in sequences.items():
      positions_3d[subject][sequence] = (rng.uniform(-0.5, 0.5, (n, 15, 3)) + [0, 0, 1]).astype(
          np.float32)
      positions_2d[subject][sequence] = [rng.uniform(0, 640, (n + 2, 15, 2)).astype(np.float32)
                                         for _ in range(3)]
  _save(folder, positions_3d, positions_2d)
  return positions_3d, positions_2d


def moving_body(num_frames: int, phase: float) -> np.ndarray:
  """(N, 15, 3) world metres: BODY_M walking (limbs swinging) and turning about z."""
  t = np.arange(num_frames, dtype=np.float64)
  swing = 0.25 * np.sin(0.35 * t + phase)
  pose = np.repeat(BODY_M[None], num_frames, axis=0)
  for joint, amount in _SWING.items():
    pose[:, joint, 1] -= amount * swing
  heading = phase + 0.09 * t
  c, s = np.cos(heading), np.sin(heading)
  rotation = np.stack([np.stack([c, -s, 0 * c], -1), np.stack([s, c, 0 * c], -1),
                       np.stack([0 * c, 0 * c, 1 + 0 * c], -1)], -2)        # (N, 3, 3)
  pose = np.einsum("nij,nkj->nki", rotation, pose)
  return pose + np.stack([0.4 * np.sin(0.05 * t + phase), 0.4 * np.cos(0.05 * t), 0 * t], -1)[
      :, None]


def project(world_m: np.ndarray, subject: str) -> list[np.ndarray]:
  """(N, 15, 3) world metres -> 3 x (N, 15, 2) pixels through C1-C3 of `subject`."""
  rotations, centres = calibration.cameras(subject)
  views = []
  for r, centre in zip(rotations, centres):
    cam = (world_m * 1000.0 - centre) @ r.T
    views.append((FOCAL_PX * cam[..., :2] / cam[..., 2:] + CENTRE_PX).astype(np.float32))
  return views


def write_moving_body(folder: pathlib.Path, chunks: dict) -> None:
  """Like `write_npz`, with `moving_body` poses and their projections (module docstring)."""
  positions_3d, positions_2d = {}, {}
  for k, (subject, sequences) in enumerate(chunks.items()):
    positions_3d[subject], positions_2d[subject] = {}, {}
    for i, (sequence, n) in enumerate(sequences.items()):
      world = moving_body(n + 2, phase=0.7 * k + 1.3 * i)
      positions_3d[subject][sequence] = world[:n].astype(np.float32)
      positions_2d[subject][sequence] = project(world, subject.rpartition("/")[2])
  _save(folder, positions_3d, positions_2d)
