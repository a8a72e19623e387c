"""The MPI-INF-3DHP and HumanEva-15 layouts and their maps to and from Human3.6M-17."""

import numpy as np
import pytest

from geopose_jax import skeleton


def _is_tree(parents, root):
  for joint in range(len(parents)):
    seen, j = set(), joint
    while parents[j] >= 0:
      assert j not in seen
      seen.add(j)
      j = parents[j]
    assert j == root
  return True


@pytest.mark.parametrize("names, parents, root, flip", [
    (skeleton.MPI3DHP_JOINT_NAMES, skeleton.MPI3DHP_PARENTS, skeleton.MPI3DHP_ROOT,
     skeleton.MPI3DHP_FLIP_PERMUTATION),
    (skeleton.HUMANEVA_JOINT_NAMES, skeleton.HUMANEVA_PARENTS, skeleton.HUMANEVA_ROOT,
     skeleton.HUMANEVA_FLIP_PERMUTATION)])
def test_layouts_are_trees_and_flips_swap_sides(names, parents, root, flip):
  assert _is_tree(parents, root)
  assert [flip[flip[j]] for j in range(len(flip))] == list(range(len(flip)))
  for j, k in enumerate(flip):
    if j != k:  # "left_x" <-> "right_x", "lx" <-> "rx"
      a, b = names[j].replace("left", "l").replace("right", "r"), \
          names[k].replace("left", "l").replace("right", "r")
      assert {a[0], b[0]} == {"l", "r"} and a[1:] == b[1:]


def test_3dhp_map_is_a_named_permutation_with_its_inverse():
  pose = np.random.default_rng(0).normal(size=(2, 17, 3))
  np.testing.assert_array_equal(skeleton.h36m_to_mpi3dhp(skeleton.mpi3dhp_to_h36m(pose)), pose)
  assert sorted(skeleton.MPI3DHP_TO_H36M) == list(range(17))
  pairs = {h: skeleton.MPI3DHP_JOINT_NAMES[m] for h, m in
           zip(skeleton.H36M_JOINT_NAMES, skeleton.MPI3DHP_TO_H36M)}
  assert pairs["Hip"] == "pelvis" and pairs["Head"] == "head_top" and pairs["Thorax"] == "neck"
  assert pairs["LWrist"] == "left_wrist" and pairs["RFoot"] == "right_ankle"
  # The 28 training joints reduce to the test layout by name.
  assert [skeleton.MPI3DHP_TRAIN_JOINT_NAMES[i] for i in skeleton.MPI3DHP_28_TO_17] == list(
      skeleton.MPI3DHP_JOINT_NAMES)
  # The official 1-based "relevant" indices of mpii_get_joints.m.
  assert [i + 1 for i in skeleton.MPI3DHP_28_TO_17] == [8, 6, 15, 16, 17, 10, 11, 12, 24, 25,
                                                         26, 19, 20, 21, 5, 4, 7]


def test_humaneva_maps_fill_spine_and_neck_and_round_trip():
  pose = np.random.default_rng(1).normal(size=(3, 15, 3))
  h36m = skeleton.humaneva_to_h36m(pose)
  assert h36m.shape == (3, 17, 3)
  np.testing.assert_allclose(skeleton.h36m_to_humaneva(h36m), pose)
  np.testing.assert_allclose(h36m[:, 7], (pose[:, 0] + pose[:, 1]) / 2)   # Spine
  np.testing.assert_allclose(h36m[:, 9], (pose[:, 1] + pose[:, 14]) / 2)  # Neck/Nose
  np.testing.assert_allclose(h36m[:, 3], pose[:, 13])                     # RFoot = rankle
  with pytest.raises(ValueError, match="15"):
    skeleton.humaneva_to_h36m(np.zeros((2, 17, 3)))
  with pytest.raises(ValueError, match="Human3.6M"):
    skeleton.h36m_to_humaneva(np.zeros((2, 15, 3)))
