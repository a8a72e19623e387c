"""Metrics against worked examples, loop implementations and the H36M aggregation rules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from geopose_jax import metrics
from geopose_jax.data import vocab


def test_mpjpe_worked_example():
  target = np.array([[0.0, 0, 0], [10, 0, 0], [0, 20, 0]])
  # Shifted by (5, 5, 5), joint 1 off by 3 in z, joint 2 off by 4 in y.
  pred = target + 5.0 + np.array([[0, 0, 0], [0, 0, 3], [0, 4, 0]])
  assert math.isclose(metrics.mpjpe(pred, target), (0 + 3 + 4) / 3)
  absolute = (math.sqrt(75) + math.sqrt(25 + 25 + 64) + math.sqrt(25 + 81 + 25)) / 3
  assert math.isclose(metrics.mpjpe(pred, target, root=None), absolute)


def test_n_mpjpe_worked_example_and_root_factor():
  target = np.array([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]])
  # Twice too small: the fitted scale 2 makes it exact.
  assert math.isclose(metrics.n_mpjpe(target / 2, target), 0.0, abs_tol=1e-12)
  pred = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 1]])
  # s = <p,g>/<p,p> = 2/2 = 1; joint errors 0, 1, sqrt(5).
  plain = (1 + math.sqrt(5)) / 3
  assert math.isclose(metrics.n_mpjpe(pred, target, exclude_root_from_mean=False), plain)
  # The original's J/(J-1) factor: the mean over the two non-root joints.
  assert math.isclose(metrics.n_mpjpe(pred, target), (1 + math.sqrt(5)) / 2)
  with pytest.raises(ValueError, match="root"):
    metrics.n_mpjpe(pred, target, root=None)


def test_pa_mpjpe_worked_example():
  target = np.array([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
  pred = np.array([[1.0, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 0, 0]])
  # The best fit leaves pred in place (s = 1, any rotation about x): errors 0, 0, 1, 1.
  assert math.isclose(metrics.pa_mpjpe(pred, target), 0.5, rel_tol=1e-9)
  # A similarity-transformed copy has zero error.
  moved = 1.7 * target @ Rotation.from_rotvec([0.3, -1.0, 2.0]).as_matrix().T + [4.0, 5, 6]
  assert math.isclose(metrics.pa_mpjpe(moved, target), 0.0, abs_tol=1e-9)


def _loop_reference(pred, target):
  """Per-sample MPJPE, N-MPJPE (x J/(J-1)) and PA-MPJPE written with Python loops."""
  out = {"mpjpe": [], "n_mpjpe": [], "pa_mpjpe": []}
  for p, g in zip(pred, target):
    num_joints = len(p)
    p_rel = [p[j] - p[0] for j in range(num_joints)]
    g_rel = [g[j] - g[0] for j in range(num_joints)]
    out["mpjpe"].append(sum(np.linalg.norm(a - b) for a, b in zip(p_rel, g_rel)) / num_joints)
    dot = sum(float(a @ b) for a, b in zip(p_rel, g_rel))
    norm = sum(float(a @ a) for a in p_rel)
    s = dot / norm
    n = sum(np.linalg.norm(s * a - b) for a, b in zip(p_rel, g_rel)) / num_joints
    out["n_mpjpe"].append(n * num_joints / (num_joints - 1))
    p0, g0 = p - p.mean(0), g - g.mean(0)
    r, _ = orthogonal_procrustes(p0, g0)  # argmin |p0 r - g0|
    scale = np.sum((p0 @ r) * g0) / np.sum((p0 @ r) ** 2)
    aligned = scale * p0 @ r
    out["pa_mpjpe"].append(np.mean(np.linalg.norm(aligned - g0, axis=-1)))
  return {k: np.array(v) for k, v in out.items()}


def test_metrics_match_loop_reference():
  rng = np.random.default_rng(0)
  target = rng.normal(size=(2, 3, 17, 3)) * 300 + [0, 0, 4000]
  pred = 0.9 * target + rng.normal(size=target.shape) * 40 + [20, -10, 30]
  expected = _loop_reference(pred.reshape(-1, 17, 3), target.reshape(-1, 17, 3))
  for name in ("mpjpe", "n_mpjpe", "pa_mpjpe"):
    got = getattr(metrics, name)(pred, target)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.reshape(-1), expected[name], rtol=1e-9)


def test_metrics_on_jax_arrays_under_jit():
  rng = np.random.default_rng(1)
  target = rng.normal(size=(4, 17, 3)) * 300
  pred = target + rng.normal(size=target.shape) * 30

  @jax.jit
  def all_metrics(p, g):
    return (metrics.mpjpe(p, g), metrics.n_mpjpe(p, g), metrics.pa_mpjpe(p, g),
            metrics.pck(p, g), metrics.auc(p, g))

  got = all_metrics(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32))
  expected = (metrics.mpjpe(pred, target), metrics.n_mpjpe(pred, target),
              metrics.pa_mpjpe(pred, target), metrics.pck(pred, target),
              metrics.auc(pred, target))
  for g, e in zip(got, expected):
    assert isinstance(g, jax.Array)
    np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-2)


def test_pck_and_auc_worked_example():
  target = np.zeros((4, 3))
  # Root-relative errors 0, 100, 150, 200 mm.
  pred = np.array([[0.0, 0, 0], [100, 0, 0], [0, 150, 0], [0, 0, 200]])
  assert math.isclose(metrics.pck(pred, target), 100 * 2 / 4)  # 150 is not below 150
  assert math.isclose(metrics.pck(pred, target, threshold=150.5), 100 * 3 / 4)
  # Thresholds 0, 5, ..., 150: the root counts for 30 of them (not 0), the 100 mm joint for
  # the 10 thresholds 105..150, the others never.
  assert len(metrics.AUC_THRESHOLDS_MM) == 31 and metrics.AUC_THRESHOLDS_MM[-1] == 150.0
  assert math.isclose(metrics.auc(pred, target), 100 * (30 + 10) / (4 * 31))
  # Leaving out the root.
  assert math.isclose(metrics.pck(pred, target, joints=[1, 2, 3]), 100 / 3)
  assert math.isclose(metrics.auc(pred, target, joints=[1, 2, 3]), 100 * 10 / (3 * 31))


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="same shape"):
    metrics.mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))


def test_h36m_protocol_weighting_by_hand():
  actions = ["Walking", "Walking", "Walking", "Eating"]
  errors = {"mpjpe": [10.0, 20.0, 30.78, 100.08], "pa_mpjpe": [1.0, 2.0, 3.0, 4.0]}
  result = metrics.h36m_protocol(errors, actions)
  assert result["num_frames"] == 4
  # Frame-weighted within an action.
  assert result["per_action"]["Walking"] == {"mpjpe": 20.3, "pa_mpjpe": 2.0, "num_frames": 3}
  assert result["per_action"]["Eating"] == {"mpjpe": 100.1, "pa_mpjpe": 4.0, "num_frames": 1}
  # Unweighted over actions: (20.26 + 100.08) / 2 = 60.17 (a frame mean would give 40.2).
  assert result["mpjpe"] == 60.2 and result["pa_mpjpe"] == 3.0
  # Actions listed in vocabulary order.
  assert list(result["per_action"]) == ["Eating", "Walking"]
  # Integer codes index a dataset's own vocabulary, which the protocol cannot know.
  codes = np.array([vocab.H36M_ACTIONS.index(a) for a in actions], np.int32)
  with pytest.raises(ValueError, match="not integer codes"):
    metrics.h36m_protocol(errors, codes)


def test_h36m_protocol_errors():
  with pytest.raises(ValueError, match="'mpjpe' has 2 values for 3 frames"):
    metrics.h36m_protocol({"mpjpe": [1.0, 2.0]}, ["Walking"] * 3)
  with pytest.raises(ValueError, match="no frames"):
    metrics.h36m_protocol({"mpjpe": []}, [])


def test_format_table():
  result = metrics.h36m_protocol({"mpjpe": [10.0, 20.0, 50.0], "n_mpjpe": [9.0, 9.0, 40.0]},
                                 ["Walking", "Walking", "Directions"])
  lines = metrics.format_table(result).strip().split("\n")
  assert lines[0] == "| action | mpjpe | n_mpjpe | frames |"
  assert lines[1] == "|---|---:|---:|---:|"
  assert lines[2] == "| Directions | 50.0 | 40.0 | 1 |"
  assert lines[3] == "| Walking | 15.0 | 9.0 | 2 |"
  assert lines[4] == "| **average** | 32.5 | 24.5 | 3 |"
