"""CMU clips as Human3.6M-17 sequences: bone lengths, handedness, frame counts, placement."""

import collections

import numpy as np
import pytest

from geopose_jax.data import motion
from geopose_jax.data import motion_plan
from geopose_jax.data import motion_library
from geopose_jax.data import vocab
from geopose_jax.errors import DatasetError

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


def test_split_by_cmu_subject_from_the_index():
  """Training subjects perform clips of one set of CMU subjects, test subjects of another."""
  infos = {c.clip: c for c in motion_library.clips()}
  plan = motion_plan.default_plan()
  cmu_of = {s: {infos[item.clip].cmu_subject for item in plan[s]} for s in vocab.SUBJECTS}
  train = set().union(*(cmu_of[s] for s in vocab.TRAIN_SUBJECTS))
  test = set().union(*(cmu_of[s] for s in vocab.TEST_SUBJECTS))
  assert train and test and not train & test
  assert test <= set(motion_plan.TEST_CMU_SUBJECTS)
  split = motion_plan.library_split()
  assert {c.cmu_subject for c in split["train"]} == train  # every training CMU subject used
  assert not {c.clip for c in split["train"]} & {c.clip for c in split["test"]}
  for name in ("train", "test"):  # the generated sequences name the planned clips
    subject = vocab.TRAIN_SUBJECTS[0] if name == "train" else vocab.TEST_SUBJECTS[0]
    clips = {q.sequence.rsplit("_", 1)[0] for q in motion_plan.subject_sequences(subject)}
    assert clips <= {c.clip for c in split[name]}


def test_heldout_frames_are_disjoint_from_training():
  """The held-out split: training subjects, training CMU subjects, frames train never uses."""
  infos = {c.clip: c for c in motion_library.clips()}
  train_plan = motion_plan.default_plan()
  heldout = motion_plan.heldout_plan()
  assert set(heldout) == set(vocab.TRAIN_SUBJECTS)
  train_frames = collections.defaultdict(set)  # clip -> every frame index any subject uses
  for items in train_plan.values():
    for item in items:
      train_frames[item.clip].update(range(item.start, item.stop))
  seen = collections.defaultdict(set)
  per_action = collections.Counter()
  for subject, items in heldout.items():
    for item in items:
      frames = set(range(item.start, item.stop))
      assert not frames & train_frames[item.clip], (subject, item)
      assert not frames & seen[item.clip], (subject, item)  # no piece performed twice
      seen[item.clip] |= frames
      assert infos[item.clip].cmu_subject not in motion_plan.TEST_CMU_SUBJECTS
      per_action[subject, infos[item.clip].action] += item.stop - item.start
  assert per_action and max(per_action.values()) <= motion_plan.HELDOUT_FRAMES_PER_ACTION
  assert sum(per_action.values()) > 0.8 * len(per_action) * motion_plan.HELDOUT_FRAMES_PER_ACTION
  # A plan that uses every frame of a clip leaves nothing of it to hold out.
  clip = next(iter(train_frames))
  whole = {"S1": [motion_plan.PlanItem(clip, 0, infos[clip].num_frames + 10_000, motion.Variation())]}
  assert all(i.clip != clip for items in motion_plan.heldout_plan(whole).values() for i in items)


def test_actions_are_balanced_and_salsa_does_not_dominate():
  infos = {c.clip: c for c in motion_library.clips()}
  plan = motion_plan.default_plan()
  for subject in vocab.SUBJECTS:
    budget = (motion_plan.TRAIN_FRAMES_PER_ACTION if subject in vocab.TRAIN_SUBJECTS
              else motion_plan.TEST_FRAMES_PER_ACTION)
    frames = collections.Counter()
    for item in plan[subject]:
      frames[infos[item.clip].action] += item.stop - item.start
    assert set(frames) <= set(vocab.LIBRARY_ACTIONS)
    for action, count in frames.items():
      assert budget <= count < budget + 50, (subject, action, count)
  assert {infos[i.clip].action for s in vocab.TRAIN_SUBJECTS for i in plan[s]} == set(
      vocab.LIBRARY_ACTIONS)
  # Salsa (CMU 60) is ~80% of the training dancing minutes; sampled by CMU subject it is
  # at most half of the training dancing frames.
  dancing = collections.Counter()
  for s in vocab.TRAIN_SUBJECTS:
    for item in plan[s]:
      if infos[item.clip].action == "dancing":
        dancing[infos[item.clip].cmu_subject] += item.stop - item.start
  minutes = collections.Counter()
  for c in motion_plan.library_split()["train"]:
    if c.action == "dancing":
      minutes[c.cmu_subject] += c.num_frames
  assert minutes["60"] / sum(minutes.values()) > 0.75
  assert dancing["60"] / sum(dancing.values()) < 0.5


def test_test_sequences_are_placed_inside_the_cameras():
  test = motion_plan.synthetic_sequences(subjects=("S9",))
  assert {s.action for s in test} <= set(vocab.LIBRARY_ACTIONS) and len(test) > 10
  grid = motion.allowed_root_grid("S9")
  for s in test:
    assert s.poses_world.dtype == np.float32 and s.poses_world.shape[1:] == (17, 3)
    assert len(s.poses_world) >= 2
    d = np.abs(s.poses_world[:, None, 0, :2] - grid[None]).max(-1).min(-1)
    assert d.max() <= 50.0 + 1e-3


def test_subjects_have_different_bodies():
  path = motion.clip_path("02_03")
  thigh = {s: _bone_lengths(motion.clip_poses(path, 50.0, motion.SUBJECT_SCALES[s])[0])[0, 1]
           for s in ("S1", "S8", "S11")}
  assert len({round(v) for v in thigh.values()}) == 3


def test_bad_input(tmp_path):
  with pytest.raises(ValueError, match="S2"):
    motion_plan.synthetic_sequences(subjects=("S2",))
  with pytest.raises(DatasetError, match="library.json"):
    motion_plan.synthetic_sequences(subjects=("S9",), library_dir=str(tmp_path))
  with pytest.raises(ValueError, match="fps=25"):
    motion_plan.synthetic_sequences(fps=25.0, subjects=("S9",))
  with pytest.raises(ValueError, match="99_99"):
    motion.clip_path("99_99")
