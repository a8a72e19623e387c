"""CMU clips as Human3.6M-17 sequences: bone lengths, handedness, frame counts, placement."""

import numpy as np
import pytest

from geopose_jax.data import motion
from geopose_jax.data import vocab

_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]


def _bone_lengths(poses):
  child = np.arange(1, 17)
  return np.linalg.norm(poses[:, child] - poses[:, np.array(_PARENTS)[child]], axis=-1)


def test_frame_count_and_constant_bones():
  poses, lowest = motion.clip_poses(motion.clip_path("02_03"), fps=50.0)
  # 174 frames at 120 fps, T-pose dropped: 173 frames span 172/120 s -> 72 frames at 50 fps.
  assert poses.shape == (72, 17, 3) and lowest.shape == (72,)
  # Limb bones are single rigid CMU bones; the spine and neck bend through several joints.
  limbs = np.array([2, 3, 5, 6, 12, 13, 15, 16]) - 1
  bones = _bone_lengths(poses)[:, limbs]
  np.testing.assert_allclose(bones, np.broadcast_to(bones[0], bones.shape), rtol=1e-6)
  # Thigh of a ~1.6 m CMU performer, in millimetres.
  assert 300 < bones[0, 0] < 500
  assert lowest.min() == pytest.approx(0.0, abs=1e-6)
  assert poses[..., 2].min() > 0  # ankles above the floor
  assert poses[:, 10, 2].mean() > 1400  # head top, Z up


def test_resampling_keeps_duration():
  at_120, _ = motion.clip_poses(motion.clip_path("02_03"), fps=120.0)
  at_50, _ = motion.clip_poses(motion.clip_path("02_03"), fps=50.0)
  assert len(at_120) == 173
  # Frame k at 50 fps is frame 2.4 k at 120 fps: k = 5 lands exactly on frame 12.
  np.testing.assert_allclose(at_50[5], at_120[12], atol=1e-6)


@pytest.mark.parametrize("mirror", [False, True])
def test_left_is_left_while_walking(mirror):
  poses, _ = motion.clip_poses(motion.clip_path("02_01"), fps=50.0)
  placed = motion.place(poses, "S9", motion.Variation(mirror=mirror, heading_deg=30.0))
  velocity = np.gradient(placed[:, 0, :2], axis=0)
  forward = velocity / np.linalg.norm(velocity, axis=-1, keepdims=True)
  left = np.stack([-forward[:, 1], forward[:, 0]], -1)  # z x forward, Z up
  hips = placed[:, 4, :2] - placed[:, 1, :2]  # LHip - RHip
  shoulders = placed[:, 11, :2] - placed[:, 14, :2]
  assert np.mean(np.sum(hips * left, -1) > 0) > 0.9
  assert np.mean(np.sum(shoulders * left, -1) > 0) > 0.9


def test_subjects_split_and_placement():
  test = motion.synthetic_sequences(subjects=("S9",))
  assert {s.sequence.rsplit("_", 1)[0] for s in test} == set(motion.TEST_CLIPS)
  for clips in motion.SEQUENCE_PLAN.values():
    assert clips
  train_clips = {c for s in vocab.TRAIN_SUBJECTS for c, _ in motion.SEQUENCE_PLAN[s]}
  assert not train_clips & set(motion.TEST_CLIPS)
  assert {s.action for s in test} == {"Walking", "Running"}
  grid = motion.allowed_root_grid("S9")
  for s in test:
    assert s.poses_world.dtype == np.float32 and s.poses_world.shape[1:] == (17, 3)
    assert len(s.poses_world) > 30
    d = np.abs(s.poses_world[:, None, 0, :2] - grid[None]).max(-1).min(-1)
    assert d.max() <= 50.0 + 1e-3


def test_subjects_have_different_bodies():
  path = motion.clip_path("02_03")
  thigh = {s: _bone_lengths(motion.clip_poses(path, 50.0, motion.SUBJECT_SCALES[s])[0])[0, 1]
           for s in ("S1", "S8", "S11")}
  assert len({round(v) for v in thigh.values()}) == 3


def test_bad_input(tmp_path):
  with pytest.raises(ValueError, match="S2"):
    motion.synthetic_sequences(subjects=("S2",))
  with pytest.raises(FileNotFoundError, match="35_01.bvh"):
    motion.synthetic_sequences(subjects=("S9",), bvh_dir=tmp_path)
  with pytest.raises(ValueError, match="99_99"):
    motion.clip_path("99_99")
