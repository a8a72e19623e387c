"""Detector layouts -> H36M-17: each synthesised joint on hand-computed values."""

import numpy as np
import pytest

from geopose_jax import layouts
from geopose_jax.errors import InputError


def _coco_pose():
  """A frontal COCO-17 pose with round numbers (pixels, y down)."""
  p = np.zeros((17, 2))
  p[0] = (100, 50)  # nose
  p[1], p[2] = (104, 46), (96, 46)  # left eye, right eye
  p[3], p[4] = (110, 48), (90, 48)  # ears
  p[5], p[6] = (120, 80), (80, 80)  # shoulders
  p[7], p[8] = (124, 110), (76, 110)
  p[9], p[10] = (126, 140), (74, 140)
  p[11], p[12] = (112, 160), (88, 160)  # hips
  p[13], p[14] = (112, 210), (88, 210)
  p[15], p[16] = (112, 260), (88, 260)
  return p


def test_coco_to_h36m_hand_values():
  p = _coco_pose()
  conf = np.linspace(0.5, 0.9, 17)
  out, c = layouts.to_h36m(p, conf, "coco17")
  np.testing.assert_allclose(out[0], (100, 160))  # pelvis = hip midpoint
  np.testing.assert_allclose(out[8], (100, 80))  # thorax = shoulder midpoint
  np.testing.assert_allclose(out[7], (100, 120))  # spine = (pelvis + thorax) / 2
  np.testing.assert_allclose(out[9], (100, 50))  # neck/nose = nose
  # head top: x = mean(104, 96, 110, 90) = 100; y = 46 + 46 - 50 = 42.
  np.testing.assert_allclose(out[10], (100, 42))
  np.testing.assert_allclose(out[1], p[12])  # RHip
  np.testing.assert_allclose(out[6], p[15])  # LFoot = left ankle
  np.testing.assert_allclose(out[16], p[10])  # RWrist
  # Confidences: copies keep theirs, synthesised joints take the min of their sources.
  assert c[1] == conf[12]
  assert c[0] == min(conf[11], conf[12])
  assert c[8] == min(conf[5], conf[6])
  assert c[7] == min(conf[5], conf[6], conf[11], conf[12])
  assert c[10] == min(conf[0:5])


def test_halpe_and_body25_use_their_own_joints():
  coco = _coco_pose()
  halpe = np.concatenate([coco, np.zeros((9, 2))])
  halpe[17], halpe[18], halpe[19] = (101, 30), (100, 75), (100, 158)
  out, _ = layouts.to_h36m(halpe, np.ones(26), "halpe26")
  np.testing.assert_allclose(out[10], (101, 30))
  np.testing.assert_allclose(out[8], (100, 75))
  np.testing.assert_allclose(out[0], (100, 158))
  np.testing.assert_allclose(out[7], (100, (158 + 75) / 2))

  names = layouts.LAYOUTS["body25"].joint_names
  coco_names = layouts.LAYOUTS["coco17"].joint_names
  body = np.zeros((25, 2))
  for i, n in enumerate(coco_names):
    body[names.index(n)] = coco[i]
  body[names.index("neck")] = (100, 78)
  body[names.index("mid_hip")] = (100, 161)
  out, _ = layouts.to_h36m(body, np.ones(25), "body25")
  np.testing.assert_allclose(out[8], (100, 78))
  np.testing.assert_allclose(out[0], (100, 161))
  np.testing.assert_allclose(out[10], (100, 42))
  np.testing.assert_allclose(out[2], coco[14])


def test_mediapipe_maps_by_name():
  names = layouts.LAYOUTS["mediapipe33"].joint_names
  coco_names = layouts.LAYOUTS["coco17"].joint_names
  coco = _coco_pose()
  mp = np.full((33, 2), 7.0)
  for i, n in enumerate(coco_names):
    mp[names.index(n)] = coco[i]
  out, _ = layouts.to_h36m(mp, np.ones(33), "mediapipe")
  ref, _ = layouts.to_h36m(coco, np.ones(17), "coco17")
  np.testing.assert_allclose(out, ref)


def test_interpolation_linear_and_edges_held():
  pts = np.zeros((5, 1, 2))
  pts[:, 0, 0] = [0, 10, 99, 30, 99]
  missing = np.array([[True], [False], [True], [False], [True]])
  out = layouts.interpolate_missing(pts, missing, joint_names=("J",))
  np.testing.assert_allclose(out[:, 0, 0], [10, 10, 20, 30, 30])


def test_interpolation_uses_frame_numbers():
  pts = np.zeros((3, 1, 2))
  pts[:, 0, 1] = [0, 99, 40]
  out = layouts.interpolate_missing(pts, np.array([[False], [True], [False]]),
                                    frames=np.array([0, 1, 4]), joint_names=("J",))
  assert out[1, 0, 1] == pytest.approx(10.0)


def test_joint_missing_everywhere_names_it():
  pts = np.ones((4, 17, 2))
  missing = np.zeros((4, 17), bool)
  missing[:, 13] = True
  with pytest.raises(InputError, match="LWrist"):
    layouts.interpolate_missing(pts, missing, origin="x.json")


def test_unknown_layout():
  with pytest.raises(InputError, match="unknown keypoint layout 'coco18'"):
    layouts.get_layout("coco18")
