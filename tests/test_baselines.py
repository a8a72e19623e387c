"""The mean-pose baseline against hand computations."""

import numpy as np
import pytest

from geopose_jax import baselines
from geopose_jax import evaluation


def test_mean_pose_is_the_root_centred_average():
  train = np.zeros((2, 3, 3))
  train[0] = [[10, 0, 0], [11, 0, 0], [10, 2, 0]]   # root-relative: (1,0,0), (0,2,0)
  train[1] = [[-5, 5, 5], [-2, 5, 5], [-5, 5, 9]]   # root-relative: (3,0,0), (0,0,4)
  np.testing.assert_allclose(baselines.mean_root_relative_pose(train),
                             [[0, 0, 0], [2, 0, 0], [0, 1, 2]])


def test_baseline_errors_by_hand():
  train = np.array([[[0, 0, 0], [100, 0, 0]], [[7, 7, 7], [107, 7, 7]]], float)
  # The mean pose is joint 1 at (100, 0, 0) from the root. Test frame A: joint 1 at
  # (100, 30, 40) -> error 50 at joint 1, 0 at the root; frame B: exactly the mean pose.
  test = np.array([[[500, 0, 0], [600, 30, 40]], [[1, 2, 3], [101, 2, 3]]], float)
  info = evaluation.SequenceInfo(labels=("a", "b"), actions=("walk", "run"))
  table = baselines.mean_pose_baseline(train, test, np.array([0, 1]), info)
  assert table["per_action"]["walk"]["mpjpe"] == pytest.approx(25.0)
  assert table["per_action"]["run"]["mpjpe"] == pytest.approx(0.0)
  assert table["mpjpe"] == pytest.approx(12.5)  # unweighted over the two actions
  # N-MPJPE: best scale s = <p, g> / <p, p> = 100*100 / 100^2 = 1 for frame A: unchanged.
  assert table["per_action"]["walk"]["n_mpjpe"] == pytest.approx(25.0)
  assert table["per_action"]["run"]["pa_mpjpe"] == pytest.approx(0.0, abs=1e-6)
  assert "2 training frames" in table["baseline"]


def test_one_sequence_by_default_and_bad_shapes():
  rng = np.random.default_rng(0)
  train, test = rng.normal(size=(20, 17, 3)), rng.normal(size=(9, 17, 3))
  table = baselines.mean_pose_baseline(train, test)
  mean = baselines.mean_root_relative_pose(train)
  loop = np.mean([np.mean(np.linalg.norm(mean - (t - t[0]), axis=-1)) for t in test])
  assert table["mpjpe"] == pytest.approx(loop, abs=0.05)
  with pytest.raises(ValueError, match=r"\(M, 17, 3\)"):
    baselines.mean_pose_baseline(train, test[:, :16])
  with pytest.raises(ValueError, match="non-empty"):
    baselines.mean_root_relative_pose(np.zeros((0, 17, 3)))
  with pytest.raises(ValueError, match="info"):
    baselines.mean_pose_baseline(train, test, np.zeros(9, int))
