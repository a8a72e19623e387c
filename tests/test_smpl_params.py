"""smpl_params/cmu: every CMU skeleton variant on SMPL's tree, the balanced frames, the build."""

import dataclasses
import logging

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_prep import array_record_builder
from data_prep import smpl_params
from data_prep.smpl_params import cmu
from data_prep.smpl_params import library_frames
from data_prep.smpl_params import smpl_params_dataset_builder as builder_lib
from geopose_jax import skeleton
from geopose_jax.body import procedural
from geopose_jax.data import bvh as bvh_lib
from geopose_jax.data import motion
from geopose_jax.data import motion_library
from geopose_jax.data import motion_plan
from geopose_jax.data import vocab
from geopose_jax.errors import InputError
import fake_poses  # tests/ is on sys.path under pytest

PARENTS = skeleton.SMPL_PARENTS
NAMES = skeleton.SMPL_JOINT_NAMES
# One clip of each variant the library holds: the MotionBuilder release, a clip converted
# from CMU's ASF/AMC to that layout, the 2008 release (renamed; arms down at rest), the Daz
# release in centimetres and the rescaled 60 fps salsa Daz files.
VARIANT_CLIPS = ("02_03", "10_04", "94_01", "12_01", "60_01")


def smpl_joints(theta):
  """(72,) axis-angle on the procedural rest skeleton -> (24, 3) joints (numpy loop)."""
  return fake_poses.smpl_forward_kinematics(theta, procedural.rest_skeleton()[0])


def cmu_pose(clip, frame):
  """(J, 3) positions and (J, 3, 3) world rotations of a library clip (numpy loop)."""
  world, joints = [None] * len(clip.joints), np.zeros((len(clip.joints), 3))
  for j, p in enumerate(clip.parents):
    local = clip.rotations[frame, j]
    if p < 0:
      world[j], joints[j] = local, clip.root[frame] + clip.offsets[j]
    else:
      world[j] = world[p] @ local
      joints[j] = joints[p] + world[p] @ clip.offsets[j]
  return joints, np.stack(world)


def angle_deg(a, b):
  return np.rad2deg(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


@pytest.mark.parametrize("clip_id", VARIANT_CLIPS)
def test_theta_reproduces_the_clip_bone_directions(clip_id):
  clip = motion_library.load_clip(clip_id)
  index = {n: i for i, n in enumerate(clip.joints)}
  mapping = cmu.SMPL_FROM_DAZ if clip.info.skeleton == "cgspeed-Daz" else cmu.SMPL_FROM_CMU
  frames = np.linspace(0, clip.info.num_frames - 1, 5).astype(int)
  theta = cmu.library_theta(clip, frames)
  assert theta.shape == (5, 72) and np.all(np.isfinite(theta))
  for f, frame in enumerate(frames):
    ours = smpl_joints(theta[f])
    theirs, world = cmu_pose(clip, frame)
    compared = 0
    for j in range(1, 24):
      children = [k for k, p in enumerate(PARENTS) if p == j]
      if not children or mapping[NAMES[j]] not in index:
        continue
      k = children[0]
      a, b = index[mapping[NAMES[j]]], index.get(mapping[NAMES[k]])
      if b is None:   # the library keeps no fingers: the hand continues the forearm at rest
        want = world[a] @ clip.offsets[a]
      elif clip.parents[b] == a and np.linalg.norm(clip.offsets[b]) > 5.0:  # one CMU bone
        want = theirs[b] - theirs[a]
      else:
        continue
      assert angle_deg(ours[k] - ours[j], want) < 0.01, (clip_id, frame, NAMES[j], NAMES[k])
      compared += 1
    assert compared >= 14   # legs, arms, hands, the spine and the neck are all compared


def test_every_library_clip_maps_onto_smpl():
  for info in motion_library.clips():
    clip = motion_library.load_clip(info.clip)
    corrections = cmu.rest_corrections(clip.parents, clip.offsets, cmu.smpl_sources(clip.joints))
    angles = np.rad2deg(np.linalg.norm(Rotation.from_matrix(corrections).as_rotvec(), axis=-1))
    # T-poses need at most SMPL's forward-leaning neck (~45); the 2008 arms hang down (90).
    assert angles.max() < (95.0 if info.clip == "94_01" else 50.0), info.clip
    assert angles[0] == 0.0 and angles[NAMES.index("head")] == 0.0   # pelvis, leaves: C = I


def test_the_bvh_path_gives_the_bvh_bone_directions():
  bvh = bvh_lib.read_bvh(motion.clip_path("02_03"))
  theta = cmu.to_axis_angle(cmu.bvh_rotations(bvh)[60:61])[0]
  ours, theirs = smpl_joints(theta), bvh_lib.joint_positions(bvh)[60]
  for parent, child in (("left_hip", "left_knee"), ("right_knee", "right_ankle"),
                        ("left_shoulder", "left_elbow"), ("right_elbow", "right_wrist"),
                        ("left_collar", "left_shoulder"), ("spine1", "spine2")):
    want = (theirs[bvh.index(cmu.SMPL_FROM_CMU[child])]
            - theirs[bvh.index(cmu.SMPL_FROM_CMU[parent])])
    assert angle_deg(ours[NAMES.index(child)] - ours[NAMES.index(parent)], want) < 0.01


def test_skeletons_that_do_not_map_are_rejected_with_the_reason():
  clip = motion_library.load_clip("02_03")
  sources = cmu.smpl_sources(clip.joints)
  mirrored = clip.offsets * [-1.0, 1.0, 1.0]          # left and right swapped
  with pytest.raises(InputError, match="left hip is not at \\+x"):
    cmu.rest_corrections(clip.parents, mirrored, sources)
  backwards = clip.offsets.copy()
  backwards[clip.joints.index("LeftFoot")] *= -1.0    # the left shin points up
  with pytest.raises(InputError, match="left_knee bone by 1[0-9][0-9] degrees"):
    cmu.rest_corrections(clip.parents, backwards, sources)
  renamed = tuple("Toe" if n == "LeftToeBase" else n for n in clip.joints)
  with pytest.raises(InputError, match="lacks the joints \\['LeftToeBase'\\]"):
    cmu.smpl_sources(renamed)


def test_a_clip_that_does_not_map_is_left_out_and_logged(monkeypatch, caplog):
  real = motion_library.load_clip
  broken = lambda clip: dataclasses.replace(real(clip), offsets=real(clip).offsets * [-1, 1, 1])
  monkeypatch.setattr(motion_library, "load_clip",
                      lambda clip: broken(clip) if clip == "16_01" else real(clip))
  infos = [c for c in motion_library.clips() if c.clip in ("16_01", "16_02", "12_01")]
  with caplog.at_level(logging.WARNING):
    kept = builder_lib.usable_clips(infos)
  assert [c.clip for c in kept] == ["12_01", "16_02"]
  assert "16_01" in caplog.text and "left hip" in caplog.text


def test_allocate_shares_equally_up_to_each_subjects_frames():
  assert library_frames.allocate({"a": 10, "b": 100, "c": 1000}, 600, 3) == {
      "a": 30, "b": 285, "c": 285}
  assert library_frames.allocate({"a": 10, "b": 100, "c": 1000}, 600, 1) == {
      "a": 10, "b": 100, "c": 490}
  assert library_frames.allocate({"a": 10, "b": 20}, 600, 2) == {"a": 20, "b": 40}


@pytest.mark.parametrize("split,max_repeats", (("train", 3), ("test", 1)))
def test_frames_are_balanced_by_action_and_cmu_subject(split, max_repeats):
  infos = motion_plan.library_split()[split]
  picks = library_frames.balanced_frames(infos, 400, max_repeats, seed=[0, 1])
  cells, available = {}, {}
  for info in infos:
    key = (info.action, info.cmu_subject)
    available[key] = available.get(key, 0) + info.num_frames
  for info, frames in picks:
    assert 0 <= frames.min() and frames.max() < info.num_frames
    assert np.all(np.diff(frames) >= 0)
    if max_repeats == 1:
      assert len(np.unique(frames)) == len(frames)
    key = (info.action, info.cmu_subject)
    cells[key] = cells.get(key, 0) + len(frames)
  for action in {a for a, _ in available}:
    counts = {s: n for (a, s), n in cells.items() if a == action}
    caps = {s: n * max_repeats for (a, s), n in available.items() if a == action}
    assert sum(counts.values()) == min(400, sum(caps.values())), action
    # Water-filling: a subject below the largest share gives all its frames may give.
    most = max(counts.values())
    assert all(n >= most - 1 or n == caps[s] for s, n in counts.items()), (action, counts)
  again = library_frames.balanced_frames(infos, 400, max_repeats, seed=[0, 1])
  other = library_frames.balanced_frames(infos, 400, max_repeats, seed=[1, 1])
  assert all(np.array_equal(a[1], b[1]) for a, b in zip(picks, again))
  assert not all(np.array_equal(a[1], b[1]) for a, b in zip(picks, other))


def test_the_cmu_build_splits_by_cmu_subject_and_records_its_frames(tmp_path):
  config = smpl_params.SmplParamsConfig(name="cmu_small", source="cmu", train_frames_per_action=30,
                                        test_frames_per_action=20)
  builder = array_record_builder.prepare(smpl_params.Builder(config=config,
                                                              data_dir=str(tmp_path)))
  train, test = (smpl_params.load_split(builder, s) for s in ("train", "test"))
  test_actions = {c.action for c in motion_plan.library_split()["test"]}
  assert len(train["theta"]) == 2 * 30 * len(vocab.LIBRARY_ACTIONS)
  assert len(test["theta"]) == 2 * 20 * len(test_actions)
  assert not set(train["cmu_subject"]) & set(motion_plan.TEST_CMU_SUBJECTS)
  assert set(test["cmu_subject"]) <= set(motion_plan.TEST_CMU_SUBJECTS)
  assert set(train["action"]) == set(vocab.LIBRARY_ACTIONS) and set(test["action"]) == test_actions
  infos = {c.clip: c for c in motion_library.clips()}
  for data in (train, test):
    assert all(infos[s].cmu_subject == c for s, c in zip(data["source"], data["cmu_subject"]))
    assert all(infos[s].action == a for s, a in zip(data["source"], data["action"]))
    assert data["mirrored"].mean() == 0.5
  # The stored theta is the mapping of the named clip and frame (mirrored where it says).
  for i in np.random.default_rng(0).choice(len(train["theta"]), 6, replace=False):
    want = cmu.library_theta(motion_library.load_clip(train["source"][i]),
                             train["frame"][i:i + 1])[0]
    want = cmu.mirror_axis_angle(want) if train["mirrored"][i] else want
    np.testing.assert_allclose(train["theta"][i], want, atol=1e-5)
  assert np.abs(train["beta"]).max() <= 3.0 and 0.9 < train["beta"].std() < 1.1
