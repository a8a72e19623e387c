"""Joint layouts: consistency of parents, flips, maps and action names."""

import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax import skeleton as sk
from geopose_jax.data import vocab


def test_h36m_layout_is_consistent():
  assert len(sk.H36M_JOINT_NAMES) == len(sk.H36M_PARENTS) == 17
  assert len(sk.H36M_32_TO_17) == 17 and max(sk.H36M_32_TO_17) < 32
  # Every parent comes before its child, so a forward pass over joints is valid.
  assert all(p < j for j, p in enumerate(sk.H36M_PARENTS))
  assert sk.H36M_BONES[0] == (1, 0) and len(sk.H36M_BONES) == 16
  for (j, p) in sk.H36M_BONES:
    assert sk.H36M_PARENTS[j] == p
  # Left/right by name.
  for l, r in zip(sk.H36M_LEFT, sk.H36M_RIGHT):
    assert sk.H36M_JOINT_NAMES[l][0] == "L" and sk.H36M_JOINT_NAMES[r][0] == "R"
    assert sk.H36M_JOINT_NAMES[l][1:] == sk.H36M_JOINT_NAMES[r][1:]


def test_flip_permutation_is_an_involution_swapping_sides():
  perm = np.asarray(sk.H36M_FLIP_PERMUTATION)
  np.testing.assert_array_equal(perm[perm], np.arange(17))
  for l, r in zip(sk.H36M_LEFT, sk.H36M_RIGHT):
    assert perm[l] == r and perm[r] == l
  for j in (0, 7, 8, 9, 10):
    assert perm[j] == j
  # Mirroring keeps the tree: a left child's parent maps to the right child's parent.
  for j, p in enumerate(sk.H36M_PARENTS):
    if p >= 0:
      assert sk.H36M_PARENTS[perm[j]] == perm[p]


def test_flip_pose_by_hand():
  pose = np.arange(17 * 3, dtype=np.float64).reshape(17, 3)
  flipped = sk.flip_pose(pose)
  # The new right hip (1) is the old left hip (4) mirrored.
  np.testing.assert_array_equal(flipped[1], [-pose[4, 0], pose[4, 1], pose[4, 2]])
  np.testing.assert_array_equal(flipped[0], [-pose[0, 0], pose[0, 1], pose[0, 2]])
  np.testing.assert_array_equal(sk.flip_pose(flipped), pose)
  # 2D, batched, JAX.
  pose_2d = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 17, 2)))
  out = sk.flip_pose(pose_2d)
  np.testing.assert_allclose(out[..., 13, 0], -pose_2d[..., 16, 0])
  np.testing.assert_allclose(out[..., 13, 1], pose_2d[..., 16, 1])
  with pytest.raises(ValueError, match="joints"):
    sk.flip_pose(np.zeros((24, 3)))


def test_smpl_layout_and_flip():
  assert len(sk.SMPL_JOINT_NAMES) == len(sk.SMPL_PARENTS) == 24
  assert all(p < j for j, p in enumerate(sk.SMPL_PARENTS))
  assert sk.SMPL_JOINT_NAMES[sk.SMPL_PARENTS[sk.SMPL_JOINT_NAMES.index("left_wrist")]] == (
      "left_elbow")
  assert len(sk.SMPL_LEFT) == len(sk.SMPL_RIGHT) == 9
  perm = np.asarray(sk.SMPL_FLIP_PERMUTATION)
  np.testing.assert_array_equal(perm[perm], np.arange(24))
  assert sk.SMPL_JOINT_NAMES[perm[sk.SMPL_JOINT_NAMES.index("left_knee")]] == "right_knee"
  out = sk.flip_pose(np.eye(24, 3), sk.SMPL_FLIP_PERMUTATION)
  assert out.shape == (24, 3)


def test_smpl_to_h36m_pairs_name_the_same_body_part():
  smpl, h36m = sk.SMPL_TO_H36M_SMPL_INDICES, sk.SMPL_TO_H36M_H36M_INDICES
  assert len(smpl) == len(h36m) == 14 and len(set(h36m)) == 14
  assert set(range(17)) - set(h36m) == {1, 4, 10}
  part = {"Knee": "knee", "Foot": "ankle", "Shoulder": "shoulder", "Elbow": "elbow",
          "Wrist": "wrist"}
  for s, h in zip(smpl, h36m):
    name = sk.H36M_JOINT_NAMES[h]
    if name[0] in "LR" and name[1:] in part:
      side = "left" if name[0] == "L" else "right"
      assert sk.SMPL_JOINT_NAMES[s] == f"{side}_{part[name[1:]]}"


def test_cmu_map_covers_all_but_head_top():
  assert sorted(sk.CMU_BVH_TO_H36M.values()) == [j for j in range(17) if j != 10]


@pytest.mark.parametrize("raw, expected", [
    ("TakingPhoto", "Photo"), ("TakingPhoto 1", "Photo"), ("Photo 2", "Photo"),
    ("WalkingDog", "WalkDog"), ("WalkDog 1", "WalkDog"), ("WalkTogether 2", "WalkTogether"),
    ("Walking", "Walking"), ("Walking 1", "Walking"), ("Sitting 2", "Sitting"),
    ("SittingDown", "SittingDown"), ("SittingDown 1", "SittingDown"),
    ("Directions 1.54138969", "Directions"), ("Eating 2.60457274.mp4", "Eating"),
    ("Greeting.cdf", "Greeting"), (" phoning_1 ", "Phoning"), ("Running", "Running"),
])
def test_canonical_action_variants(raw, expected):
  assert sk.canonical_action(raw) == expected


def test_canonical_action_covers_vocab_and_rejects_unknown():
  for name in vocab.H36M_ACTIONS:
    assert sk.canonical_action(name) == name
    assert sk.canonical_action(name + " 1") == name
  with pytest.raises(ValueError, match="'Dancing 1'"):
    sk.canonical_action("Dancing 1")
