"""The pose evaluator against hand-computed examples."""

import numpy as np
import pytest

from geopose_jax import evaluation
from geopose_jax import skeleton
from geopose_jax.train import mesh as mesh_lib


def _pose(seed: int, n: int = 5, j: int = 17) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(n, j, 3)) * 100.0


def test_root_conventions_on_a_shifted_prediction():
  target = _pose(0)
  shift = np.array([30.0, 40.0, 0.0])                 # |shift| = 50 mm
  pred = target + shift
  both = evaluation.frame_errors(pred, target, evaluation.Convention(root="both"))
  np.testing.assert_allclose(both["mpjpe"], 0.0, atol=1e-9)
  # VideoPose3D's P1: the target's root is zeroed and the prediction used as it is, so the
  # prediction's own root offset (target root + shift) is charged at every joint.
  only_target = evaluation.frame_errors(pred, target, evaluation.Convention(root="target"))
  expected = np.linalg.norm(pred - (target - target[:, :1]), axis=-1).mean(-1)
  np.testing.assert_allclose(only_target["mpjpe"], expected)
  assert np.all(only_target["mpjpe"] > 0)


def test_scaled_prediction_is_exact_after_scale_fit():
  target = _pose(1)
  target = target - target[:, :1]
  pred = 0.5 * target
  errors = evaluation.frame_errors(pred, target, evaluation.Convention(rhodin_n_mpjpe=True))
  np.testing.assert_allclose(errors["n_mpjpe"], 0.0, atol=1e-9)
  np.testing.assert_allclose(errors["pa_mpjpe"], 0.0, atol=1e-6)
  # Plain MPJPE: half of each joint's distance to the root, mean over all 17 joints.
  np.testing.assert_allclose(errors["mpjpe"], 0.5 * np.linalg.norm(target, axis=-1).mean(-1))


def test_rhodin_factor_is_17_over_16():
  target = _pose(2)
  pred = target + np.random.default_rng(3).normal(size=target.shape) * 10.0
  errors = evaluation.frame_errors(pred, target, evaluation.Convention(rhodin_n_mpjpe=True))
  np.testing.assert_allclose(errors["n_mpjpe_rhodin"], errors["n_mpjpe"] * 17 / 16)


def test_pck_and_auc_on_a_worked_example():
  target = np.zeros((1, 4, 3))
  target[0, 1:, 0] = [100.0, 200.0, 300.0]
  pred = target.copy()
  pred[0, 1, 1] = 10.0      # joint 1: 10 mm off
  pred[0, 2, 1] = 160.0     # joint 2: 160 mm off
  errors = evaluation.frame_errors(pred, target)
  # Joint errors 0, 10, 160, 0 -> 3 of 4 below 150 mm.
  np.testing.assert_allclose(errors["pck"], [75.0])
  np.testing.assert_allclose(errors["mpjpe"], [42.5])
  # AUC: thresholds 0, 5, ..., 150; the 0 mm joints pass every threshold but 0 (strict <),
  # the 10 mm joint passes from 15 mm on (28 of 31), the 160 mm joint never.
  expected = 100.0 * (30 + 28 + 0 + 30) / (31 * 4)
  np.testing.assert_allclose(errors["auc"], [expected])


def test_velocity_and_acceleration_errors():
  t = np.arange(6, dtype=np.float64)
  target = np.zeros((6, 2, 3))
  target[:, 1, 0] = 100.0
  pred = target.copy()
  pred[:, 1, 1] = 3.0 * t             # joint 1 drifts 3 mm per frame: velocity error 3
  out = evaluation.sequence_errors(pred, target)
  np.testing.assert_allclose(out["mpjve"], 1.5)       # mean over 2 joints (root: 0)
  np.testing.assert_allclose(out["accel_error"], 0.0, atol=1e-12)
  pred[:, 1, 1] = t ** 2               # second difference 2 everywhere
  out = evaluation.sequence_errors(pred, target)
  np.testing.assert_allclose(out["accel_error"], 1.0)
  short = evaluation.sequence_errors(pred[:1], target[:1])
  assert np.isnan(short["mpjve"]).all()


def test_summary_is_unweighted_over_actions_and_per_sequence():
  info = evaluation.SequenceInfo(labels=("a1", "a2", "b1"), actions=("A", "A", "B"))
  errors = {"mpjpe": np.array([10.0, 10.0, 20.0, 40.0])}
  sequence = np.array([0, 0, 1, 2])
  result = evaluation.summarize(errors, sequence, info)
  # Action A: frames 10, 10, 20 -> 13.33; B: 40; average over actions (13.33 + 40) / 2.
  assert result["per_action"]["A"]["mpjpe"] == pytest.approx(13.3)
  assert result["mpjpe"] == pytest.approx(26.7)
  assert result["per_sequence"]["a2"] == {"mpjpe": 20.0, "num_frames": 1}
  assert "root" in result["convention"]


def test_flip_average_of_an_equivariant_predictor_is_itself():
  def predict(x):   # lifts by appending a zero depth: commutes with the left-right flip
    return np.concatenate([x, np.zeros(x.shape[:-1] + (1,))], axis=-1)

  x = np.random.default_rng(4).normal(size=(3, 17, 2))
  averaged = evaluation.flip_average(predict, skeleton.flip_pose)(x)
  np.testing.assert_allclose(averaged, predict(x), atol=1e-12)

  def biased(x):    # adds +1 to the x coordinate: not equivariant, the flip cancels it
    return predict(x) + np.array([1.0, 0.0, 0.0])

  np.testing.assert_allclose(evaluation.flip_average(biased, skeleton.flip_pose)(x),
                             predict(x), atol=1e-12)


def test_sequence_evaluation_streams_windows_and_pads_to_devices(tmp_path, four_devices):
  runtime = mesh_lib.make_runtime(tmp_path)
  rng = np.random.default_rng(5)
  lengths = (7, 3, 10)
  sequences = [evaluation.Sequence2D(pose_2d=rng.normal(size=(n, 17, 2)),
                                     pose_3d=rng.normal(size=(n, 17, 3)), code=i)
               for i, n in enumerate(lengths)]
  info = evaluation.SequenceInfo(labels=("x", "y", "z"), actions=("X", "X", "Z"))
  calls = []

  def make_windows(sequence_2d, frames):          # window = the frame itself
    return sequence_2d[frames][:, None]

  def predict(windows):
    calls.append(len(windows))
    lifted = np.concatenate([windows[:, 0], np.zeros(windows.shape[:1] + (17, 1))], -1)
    return lifted

  result = evaluation.evaluate_sequences(predict, sequences, runtime, info=info,
                                         make_windows=make_windows, batch_size=8,
                                         progress=False)
  # 20 frames in batches of 8: 8, 8, then 4 (already a multiple of the 4 devices).
  assert calls == [8, 8, 4]
  assert result["num_frames"] == 20
  # The same numbers straight from frame_errors.
  pred = np.concatenate([predict(make_windows(s.pose_2d, np.arange(len(s.pose_2d))))
                         for s in sequences])
  target = np.concatenate([s.pose_3d for s in sequences])
  direct = evaluation.frame_errors(pred, target)["mpjpe"]
  per_x = direct[:10].mean()
  assert result["per_action"]["X"]["mpjpe"] == pytest.approx(round(per_x, 1))
  assert "mpjve" in result and "accel_error" in result

  calls.clear()
  evaluation.evaluate_sequences(predict, sequences[:1], runtime, info=info,
                                make_windows=make_windows, batch_size=8, progress=False)
  assert calls == [8]          # 7 frames padded to 8 = the next multiple of 4 devices


def test_procrustes_removes_rotation_scale_and_shift_but_the_scale_fit_does_not():
  from geopose_jax.geometry import rotations
  import jax
  rng = np.random.default_rng(0)
  gt = rng.normal(scale=200.0, size=(3, 17, 3))
  rotation = np.asarray(rotations.random_rotation(jax.random.key(0)), np.float64)
  pred = 0.01 * gt @ rotation.T + 5.0
  errors = evaluation.frame_errors(pred, gt)
  np.testing.assert_allclose(errors["pa_mpjpe"], 0.0, atol=1e-3)
  assert np.all(errors["n_mpjpe"] > 1.0)
  errors = evaluation.frame_errors(0.003 * gt, gt)
  for name in ("pa_mpjpe", "n_mpjpe"):
    np.testing.assert_allclose(errors[name], 0.0, atol=1e-3)
  assert np.all(errors["mpjpe"] > 50.0)      # plain MPJPE sees the wrong scale


def test_non_finite_predictions_are_named_not_crashed_on():
  target = _pose(6)
  pred = target.copy()
  pred[1, 3, 0] = np.nan
  with pytest.raises(evaluation.NonFinitePredictionError, match="1 of 5 predicted poses"):
    evaluation.frame_errors(pred, target)
