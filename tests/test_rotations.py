"""Rotations against scipy, their inverses, hand-written matrices and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geopose_jax.geometry import rotations as rot


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def _random_axis_angles(rng, n):
  axes = rng.normal(size=(n, 3))
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  angles = rng.uniform(0.0, math.pi - 1e-3, size=(n, 1))
  return axes * angles


def test_axis_angle_to_matrix_matches_scipy(rng):
  aa = np.concatenate([_random_axis_angles(rng, 20), 1e-5 * rng.normal(size=(3, 3)),
                       np.zeros((1, 3))])
  np.testing.assert_allclose(rot.axis_angle_to_matrix(aa),
                             Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)


def test_axis_angle_batched_and_jax_float32(rng):
  aa = _random_axis_angles(rng, 6).reshape(2, 3, 3)
  r = jax.jit(rot.axis_angle_to_matrix)(jnp.asarray(aa, jnp.float32))
  assert isinstance(r, jax.Array) and r.shape == (2, 3, 3, 3) and r.dtype == jnp.float32
  np.testing.assert_allclose(r, Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix()
                             .reshape(2, 3, 3, 3), atol=1e-6)


def test_axis_angle_round_trip_and_inverse(rng):
  aa = _random_axis_angles(rng, 30)
  r = rot.axis_angle_to_matrix(aa)
  np.testing.assert_allclose(rot.matrix_to_axis_angle(r), aa, atol=1e-9)
  # The opposite vector is the inverse, i.e. the transpose.
  np.testing.assert_allclose(rot.axis_angle_to_matrix(-aa), np.swapaxes(r, -1, -2), atol=1e-12)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-12)


def test_matrix_to_axis_angle_at_pi_and_zero():
  for axis in np.eye(3):
    aa = rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(math.pi * axis))
    # At pi the sign of the axis is arbitrary; the rotation must be the same.
    assert abs(np.linalg.norm(aa) - math.pi) < 1e-7
    np.testing.assert_allclose(rot.axis_angle_to_matrix(aa),
                               rot.axis_angle_to_matrix(math.pi * axis), atol=1e-7)
  np.testing.assert_allclose(rot.matrix_to_axis_angle(np.eye(3)), np.zeros(3), atol=1e-12)


def test_rodrigues_gradient_at_zero_is_finite_and_exact():
  # d R / d aa_i at 0 is the generator [e_i]_x.
  jac = jax.jit(jax.jacfwd(rot.axis_angle_to_matrix))(jnp.zeros(3))
  jac_rev = jax.jit(jax.jacrev(rot.axis_angle_to_matrix))(jnp.zeros(3))
  skew = lambda v: np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])  # noqa: E731
  expected = np.stack([skew(e) for e in np.eye(3)], axis=-1)  # [i, j, k] = d R_ij / d aa_k
  np.testing.assert_allclose(jac, expected, atol=1e-7)
  np.testing.assert_allclose(jac_rev, jac, atol=1e-7)
  loss_grad = jax.jit(jax.grad(lambda a: jnp.sum(rot.axis_angle_to_matrix(a) ** 3)))(
      jnp.zeros(3))
  assert np.all(np.isfinite(loss_grad))


def test_rodrigues_gradient_matches_finite_differences():
  points = np.array([[0.3, -0.2, 0.5], [1e-4, 2e-4, -1e-4], [2.0, 0.5, -1.0]])
  weights = np.arange(9.0).reshape(3, 3)
  with jax.enable_x64(True):
    f = lambda v: jnp.sum(weights * rot.axis_angle_to_matrix(v))  # noqa: E731
    grads = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(jnp.asarray(points)))
  eps = 1e-6
  # Central differences in float64 numpy, independent of JAX's autodiff.
  f_np = lambda v: np.sum(weights * rot.axis_angle_to_matrix(v))  # noqa: E731
  for point, grad in zip(points, grads):
    numeric = [(f_np(point + eps * e) - f_np(point - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_quaternion_matrix_round_trip_and_scipy(rng):
  q = rng.normal(size=(50, 4))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  r = rot.quaternion_to_matrix(q)
  # scipy stores (x, y, z, w).
  np.testing.assert_allclose(r, Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix(), atol=1e-12)
  q_back = rot.matrix_to_quaternion(r)
  np.testing.assert_allclose(q_back, q * np.sign(q[:, :1]), atol=1e-10)
  # Non-unit quaternions give the same rotation.
  np.testing.assert_allclose(rot.quaternion_to_matrix(3.0 * q), r, atol=1e-12)


def test_matrix_to_quaternion_each_branch():
  # 180-degree turns make w = 0, so each of the x, y, z branches is taken once.
  for i, axis in enumerate(np.eye(3)):
    q = rot.matrix_to_quaternion(rot.axis_angle_to_matrix(math.pi * axis))
    expected = np.zeros(4)
    expected[i + 1] = 1.0
    np.testing.assert_allclose(np.abs(q), expected, atol=1e-12)
  np.testing.assert_allclose(rot.matrix_to_quaternion(np.eye(3)), [1, 0, 0, 0], atol=1e-12)


def test_quaternion_multiply_composes_rotations(rng):
  q1, q2 = rng.normal(size=(2, 10, 4))
  np.testing.assert_allclose(
      rot.quaternion_to_matrix(rot.quaternion_multiply(q1, q2)),
      rot.quaternion_to_matrix(q1) @ rot.quaternion_to_matrix(q2), atol=1e-12)


def test_axis_angle_quaternion_round_trip(rng):
  aa = np.concatenate([_random_axis_angles(rng, 20), np.zeros((1, 3))])
  q = rot.axis_angle_to_quaternion(aa)
  np.testing.assert_allclose(rot.quaternion_to_matrix(q), rot.axis_angle_to_matrix(aa),
                             atol=1e-12)
  np.testing.assert_allclose(rot.quaternion_to_axis_angle(q), aa, atol=1e-10)
  grad = jax.jit(jax.grad(lambda a: jnp.sum(rot.quaternion_to_axis_angle(
      rot.axis_angle_to_quaternion(a)))))(jnp.zeros(3))
  np.testing.assert_allclose(grad, np.ones(3), atol=1e-6)


def test_rotation_about_axis_by_hand():
  c, s = math.cos(0.3), math.sin(0.3)
  np.testing.assert_allclose(rot.rotation_about_axis(0.3, "x"),
                             [[1, 0, 0], [0, c, -s], [0, s, c]], atol=1e-15)
  np.testing.assert_allclose(rot.rotation_about_axis(0.3, "y"),
                             [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-15)
  np.testing.assert_allclose(rot.rotation_about_axis(0.3, "z"),
                             [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-15)
  # A quarter turn about z takes x to y (right-handed).
  np.testing.assert_allclose(rot.rotation_about_axis(math.pi / 2, "z") @ [1, 0, 0], [0, 1, 0],
                             atol=1e-15)
  with pytest.raises(ValueError, match="axis"):
    rot.rotation_about_axis(0.1, "w")


def test_euler_matches_scipy_intrinsic(rng):
  angles = rng.uniform(-math.pi, math.pi, size=(10, 3))
  for axes in ("zyx", "xyz", "yxz", "zxz"):
    # scipy's upper-case sequences are intrinsic: R = R_a0 R_a1 R_a2.
    expected = Rotation.from_euler(axes.upper(), angles).as_matrix()
    np.testing.assert_allclose(rot.euler_to_matrix(angles, axes), expected, atol=1e-12)
  with pytest.raises(ValueError, match="axes"):
    rot.euler_to_matrix(angles, "zy")


def test_rotation_6d_round_trip_and_gram_schmidt(rng):
  r = Rotation.random(20, random_state=1).as_matrix()
  six = rot.matrix_to_rotation_6d(r)
  assert six.shape == (20, 6)
  np.testing.assert_allclose(six[:, :3], r[:, :, 0])
  np.testing.assert_allclose(rot.rotation_6d_to_matrix(six), r, atol=1e-12)
  # Unnormalised, non-orthogonal input still gives a rotation keeping column 0's direction.
  noisy = six * 2.5 + 0.1 * rng.normal(size=six.shape)
  out = rot.rotation_6d_to_matrix(noisy)
  np.testing.assert_allclose(out @ np.swapaxes(out, -1, -2), np.broadcast_to(np.eye(3), out.shape),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-12)
  np.testing.assert_allclose(out[:, :, 0], noisy[:, :3] / np.linalg.norm(noisy[:, :3], axis=-1,
                                                                          keepdims=True))


def test_random_rotation_orthonormal_and_uniform():
  r = np.asarray(rot.random_rotation(jax.random.key(0), (2000,)), np.float64)
  assert r.shape == (2000, 3, 3)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
  # Under the Haar measure E[R] = 0 and each entry has variance 1/3 (std of the mean ~0.013).
  assert np.abs(r.mean(axis=0)).max() < 0.06
  np.testing.assert_allclose((r ** 2).mean(axis=0), np.full((3, 3), 1 / 3), atol=0.04)
  # The rotation angle's density is (1 - cos t) / pi: its mean is pi/2 + 2/pi.
  angles = np.linalg.norm(Rotation.from_matrix(r).as_rotvec(), axis=-1)
  assert abs(angles.mean() - (math.pi / 2 + 2 / math.pi)) < 0.05


def test_random_azimuth_elevation_ranges():
  key = jax.random.key(1)
  az_range, el_range = (-0.5, 1.0), (-0.2, 0.1)
  r = np.asarray(rot.random_azimuth_elevation(key, (500,), az_range, el_range), np.float64)
  assert r.shape == (500, 3, 3)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
  # For R = R_x(el) R_y(az): R[2,1] = sin el, R[1,1] = cos el, R[0,2] = sin az, R[0,0] = cos az.
  elevation = np.arctan2(r[:, 2, 1], r[:, 1, 1])
  azimuth = np.arctan2(r[:, 0, 2], r[:, 0, 0])
  assert el_range[0] - 1e-5 <= elevation.min() and elevation.max() <= el_range[1] + 1e-5
  assert az_range[0] - 1e-5 <= azimuth.min() and azimuth.max() <= az_range[1] + 1e-5
  # The samples spread over the ranges rather than sitting at one value.
  assert azimuth.max() - azimuth.min() > 0.9 * (az_range[1] - az_range[0])
  expected = (rot.rotation_about_axis(elevation, "x") @ rot.rotation_about_axis(azimuth, "y"))
  np.testing.assert_allclose(r, expected, atol=1e-5)


def test_random_azimuth_elevation_vertical_z_and_errors():
  r = np.asarray(rot.random_azimuth_elevation(jax.random.key(2), (50,), elevation_range=(0, 0),
                                              vertical_axis="z"))
  # No elevation: a pure turn about z leaves z fixed.
  np.testing.assert_allclose(r[:, :, 2], np.broadcast_to([0, 0, 1], (50, 3)), atol=1e-6)
  with pytest.raises(ValueError, match="vertical_axis"):
    rot.random_azimuth_elevation(jax.random.key(0), vertical_axis="up")
  with pytest.raises(ValueError, match="elevation_range"):
    rot.random_azimuth_elevation(jax.random.key(0), elevation_range=(1.0, -1.0))


def test_jit_and_vmap(rng):
  aa = jnp.asarray(_random_axis_angles(rng, 8), jnp.float32)
  f = jax.jit(jax.vmap(lambda a: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(a))))
  np.testing.assert_allclose(f(aa), aa, atol=1e-4)
