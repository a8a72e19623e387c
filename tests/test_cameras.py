"""Cameras against hand computations, inverses and the raw calibration file."""

import importlib.resources
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geopose_jax.geometry import cameras as cam


def _raw_calibration():
  path = importlib.resources.files("geopose_jax") / "assets" / "h36m_cameras.json"
  return json.loads(path.read_text())


def test_distorted_projection_by_hand_with_s1_camera():
  raw = _raw_calibration()
  intr, extr = raw["intrinsics"][0], raw["extrinsics"]["S1"][0]
  w, x, y, z = extr["orientation"]
  camera_to_world = Rotation.from_quat([x, y, z, w]).as_matrix()
  point = np.array([150.0, -220.0, 880.0])
  px, py, pz = camera_to_world.T @ (point - np.array(extr["translation"]))
  # The toolbox's formula written out in scalars.
  u0, v0 = px / pz, py / pz
  k1, k2, k3 = intr["radial_distortion"]
  p1, p2 = intr["tangential_distortion"]
  r2 = u0 * u0 + v0 * v0
  radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
  tan = p1 * u0 + p2 * v0
  u = intr["focal_length"][0] * (u0 * (radial + tan) + p1 * r2) + intr["center"][0]
  v = intr["focal_length"][1] * (v0 * (radial + tan) + p2 * r2) + intr["center"][1]

  cameras = cam.load_h36m_cameras("S1")
  x_cam = cam.world_to_camera(point[None], cameras[0])
  np.testing.assert_allclose(x_cam[0], [px, py, pz], rtol=1e-6)
  np.testing.assert_allclose(cam.project_distorted(x_cam, cameras[0])[0], [u, v], rtol=1e-6)
  # The same through jit, with the Camera as a pytree argument.
  jitted = jax.jit(lambda pts, c: cam.project_distorted(cam.world_to_camera(pts, c), c))
  np.testing.assert_allclose(jitted(jnp.asarray(point[None], jnp.float32), cameras[0])[0],
                             [u, v], rtol=1e-5)


def test_distorted_projection_clips_normalised_coordinates():
  cameras = cam.load_h36m_cameras("S5")
  # X/Z = 3 and Y/Z = -2 are clipped to 1 and -1.
  far_off = cam.project_distorted(np.array([[3000.0, -2000.0, 1000.0]]), cameras[1])
  at_edge = cam.project_distorted(np.array([[1000.0, -1000.0, 1000.0]]), cameras[1])
  np.testing.assert_allclose(far_off, at_edge)


def test_distortion_free_camera_reduces_to_pinhole():
  camera = cam.Camera(R=np.eye(3), t=np.zeros(3), f=np.array([1000.0, 1100.0]),
                      c=np.array([500.0, 400.0]), k=np.zeros(3), p=np.zeros(2),
                      res=np.array([1000.0, 1000.0]))
  points = np.array([[100.0, -50.0, 2000.0], [0.0, 0.0, 10.0]])
  expected = np.array([[1000 * 0.05 + 500, 1100 * -0.025 + 400], [500.0, 400.0]])
  np.testing.assert_allclose(cam.project_distorted(points, camera), expected)
  np.testing.assert_allclose(cam.project_pinhole(points, camera.f, camera.c), expected)
  np.testing.assert_allclose(cam.project_with_intrinsics(points, camera.intrinsic_matrix),
                             expected)
  # Scalar focal length and centre.
  np.testing.assert_allclose(cam.project_pinhole(points, 1000.0, 0.0),
                             [[50.0, -25.0], [0.0, 0.0]])


def test_project_with_intrinsics_batched():
  rng = np.random.default_rng(0)
  k = np.zeros((5, 3, 3))
  k[:, 0, 0], k[:, 1, 1] = rng.uniform(100, 200, 5), rng.uniform(100, 200, 5)
  k[:, :2, 2], k[:, 2, 2] = rng.uniform(50, 70, (5, 2)), 1.0
  points = rng.normal(size=(5, 17, 3)) + [0, 0, 5]
  got = cam.project_with_intrinsics(points, k)
  for b in range(5):
    for j in range(17):
      h = k[b] @ points[b, j]
      np.testing.assert_allclose(got[b, j], h[:2] / h[2])


def test_world_camera_round_trip_and_camera_centre():
  rng = np.random.default_rng(1)
  cameras = cam.load_h36m_cameras("S9")
  points = rng.normal(size=(3, 4, 17, 3)) * 500.0
  back = cam.camera_to_world(cam.world_to_camera(points, cameras), cameras)
  np.testing.assert_allclose(back, points, atol=1e-6 * 6000)
  # The camera centre maps to the camera-frame origin.
  centre = cam.world_to_camera(np.asarray(cameras.t, np.float64)[:, None, :], cameras)
  np.testing.assert_allclose(centre, 0.0, atol=1e-9)


@pytest.mark.parametrize("subject", ["S1", "S5", "S6", "S7", "S8", "S9", "S11"])
def test_every_camera_sees_the_capture_volume(subject):
  cameras = cam.load_h36m_cameras(subject)
  assert cameras.R.shape == (4, 3, 3) and cameras.t.shape == (4, 3)
  assert cameras.res.shape == (4, 2) and cameras.R.dtype == np.float32
  np.testing.assert_allclose(cameras.R @ np.swapaxes(cameras.R, -1, -2),
                             np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(cameras.R), 1.0, atol=1e-5)
  # A point at hip height in the middle of the room is in front of every camera and inside
  # its image, and world up (+Z) points up in the image (-y in camera coordinates).
  centre = np.array([[0.0, 0.0, 900.0]])
  above = np.array([[0.0, 0.0, 1500.0]])
  x_cam = cam.world_to_camera(np.broadcast_to(centre, (4, 1, 3)), cameras)
  assert np.all(x_cam[..., 2] > 2000.0)
  uv = cam.project_distorted(x_cam, cameras)[:, 0]
  assert np.all((uv > 0) & (uv < cameras.res)), uv
  uv_above = cam.project_distorted(
      cam.world_to_camera(np.broadcast_to(above, (4, 1, 3)), cameras), cameras)[:, 0]
  assert np.all(uv_above[:, 1] < uv[:, 1])


def test_unknown_subject_is_named():
  with pytest.raises(ValueError, match=r"'S2'.*S1.*S11"):
    cam.load_h36m_cameras("S2")


def test_camera_ids_and_calibration_order():
  raw = _raw_calibration()
  assert cam.H36M_CAMERA_IDS == tuple(c["id"] for c in raw["intrinsics"])
  cameras = cam.load_h36m_cameras("S11")
  np.testing.assert_allclose(cameras.f[2], raw["intrinsics"][2]["focal_length"])
  np.testing.assert_allclose(cameras.t[3], raw["extrinsics"]["S11"][3]["translation"])
  one = cameras[1]
  assert one.R.shape == (3, 3) and one.k.shape == (3,)


def test_relative_rotation_composes():
  rs = Rotation.random(3, random_state=2).as_matrix()  # world->camera k, i, j
  r_k, r_i, r_j = rs
  r_ik = cam.relative_rotation(r_k, r_i)
  r_ji = cam.relative_rotation(r_i, r_j)
  np.testing.assert_allclose(r_ji @ r_ik, cam.relative_rotation(r_k, r_j), atol=1e-12)
  # It maps a direction seen by camera i to the same direction seen by camera j.
  d_world = np.array([0.3, -0.4, 0.8])
  np.testing.assert_allclose(r_ji @ (r_i @ d_world), r_j @ d_world, atol=1e-12)


def test_rotate_points_is_row_vector_rotation():
  rng = np.random.default_rng(3)
  points = rng.normal(size=(2, 5, 3))
  rs = Rotation.random(2, random_state=3).as_matrix()
  got = cam.rotate_points(points, rs)
  for b in range(2):
    for j in range(5):
      np.testing.assert_allclose(got[b, j], rs[b] @ points[b, j])


def test_screen_normalisation_by_hand_and_inverse():
  px = np.array([[500.0, 501.0], [0.0, 0.0], [1000.0, 1002.0]])
  norm = cam.normalize_screen_coordinates(px, 1000, 1002)
  np.testing.assert_allclose(norm, [[0.0, 0.0], [-1.0, -1.002], [1.0, 1.002]], atol=1e-12)
  np.testing.assert_allclose(cam.image_coordinates(norm, 1000, 1002), px, atol=1e-9)
  # Per-item sizes broadcasting against the points' leading dims.
  w, h = np.array([[1000.0], [500.0]]), np.array([[1000.0], [250.0]])
  norm = cam.normalize_screen_coordinates(np.full((2, 3, 2), 250.0), w, h)
  np.testing.assert_allclose(norm[0], np.full((3, 2), -0.5))
  np.testing.assert_allclose(norm[1], np.broadcast_to([0.0, 0.5], (3, 2)))
  assert math.isclose(float(cam.image_coordinates(norm, w, h)[1, 0, 1]), 250.0)
