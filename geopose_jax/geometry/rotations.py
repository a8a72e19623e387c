"""Rotation parameterisations: axis-angle, quaternions, Euler angles, 6D, random rotations.

Every function is batched over leading dimensions and works on numpy arrays (host code) or
JAX arrays (jit/vmap/grad), returning the same kind it was given. Matrices act on column
vectors (`y = R @ x`); for row-vector point sets use `cameras.rotate_points`. Quaternions
are (w, x, y, z) with the scalar first.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from geopose_jax.geometry._array import as_float_array, namespace

# Below this squared angle the Rodrigues coefficients use their Taylor series: the closed
# forms divide by the angle, whose derivative at zero is undefined.
_SMALL_ANGLE_SQ = 1e-6
_AXES = ("x", "y", "z")


def _skew(xp, v):
  """(..., 3) -> (..., 3, 3) cross-product matrix [v]_x."""
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = xp.zeros_like(x)
  return xp.stack([
      xp.stack([zero, -z, y], axis=-1),
      xp.stack([z, zero, -x], axis=-1),
      xp.stack([-y, x, zero], axis=-1)], axis=-2)


def _safe_normalize(xp, v, eps: float = 1e-12):
  """v / |v| along the last axis; zero vectors stay zero and keep finite gradients."""
  sq = xp.sum(v * v, axis=-1, keepdims=True)
  tiny = sq < eps * eps
  norm = xp.sqrt(xp.where(tiny, 1.0, sq))
  return xp.where(tiny, v, v / norm)


def axis_angle_to_matrix(axis_angle):
  """Rodrigues' formula, exact at and differentiable through the zero rotation.

  R = I + a(t) K + b(t) K^2 with K = [axis_angle]_x, t = |axis_angle|,
  a = sin t / t, b = (1 - cos t) / t^2 (computed as 2 sin^2(t/2) / t^2, which keeps its
  precision in float32); near t = 0 both use their Taylor series so neither the value nor
  the gradient goes through a division by zero.

  Args:
    axis_angle: (..., 3) rotation vectors (axis * angle in radians).

  Returns:
    (..., 3, 3) rotation matrices.
  """
  xp = namespace(axis_angle)
  aa = as_float_array(xp, axis_angle)
  theta_sq = xp.sum(aa * aa, axis=-1)
  small = theta_sq < _SMALL_ANGLE_SQ
  theta = xp.sqrt(xp.where(small, 1.0, theta_sq))  # dummy 1 on the Taylor branch
  safe_theta_sq = xp.where(small, 1.0, theta_sq)
  half_sin = xp.sin(0.5 * theta)
  a = xp.where(small, 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0,
               xp.sin(theta) / theta)
  b = xp.where(small, 0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0,
               2.0 * half_sin * half_sin / safe_theta_sq)
  k = _skew(xp, aa)
  eye = xp.eye(3, dtype=aa.dtype)
  return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quaternion_to_matrix(quaternion):
  """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices.

  Quaternions need not be unit: the formula divides by |q|^2, so q and c*q give the same
  rotation.
  """
  xp = namespace(quaternion)
  q = as_float_array(xp, quaternion)
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  s = 2.0 / xp.sum(q * q, axis=-1)
  rows = [
      [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
      [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
      [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
  ]
  return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quaternion(matrix):
  """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0.

  Each of |w|, |x|, |y|, |z| can be read off the diagonal; the largest is computed from its
  square root and the other three from off-diagonal sums divided by it, so no division is
  by a number smaller than 1/2.
  """
  xp = namespace(matrix)
  m = as_float_array(xp, matrix)
  m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  # 4 * (w^2, x^2, y^2, z^2).
  four_sq = xp.stack([
      1.0 + m00 + m11 + m22,
      1.0 + m00 - m11 - m22,
      1.0 - m00 + m11 - m22,
      1.0 - m00 - m11 + m22], axis=-1)
  # Candidate i is 4 * q_i * q; dividing by 4 q_i = 2 sqrt(four_sq_i) gives q.
  candidates = xp.stack([
      xp.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], axis=-1),
      xp.stack([m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20], axis=-1),
      xp.stack([m02 - m20, m10 + m01, four_sq[..., 2], m21 + m12], axis=-1),
      xp.stack([m10 - m01, m02 + m20, m21 + m12, four_sq[..., 3]], axis=-1)], axis=-2)
  denominators = 2.0 * xp.sqrt(xp.maximum(four_sq, 0.1))  # the chosen one is >= 1
  candidates = candidates / denominators[..., None]
  best = xp.argmax(four_sq, axis=-1)
  q = xp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
  q = xp.where(q[..., :1] < 0, -q, q)
  return q / xp.sqrt(xp.sum(q * q, axis=-1, keepdims=True))


def quaternion_multiply(q1, q2):
  """Hamilton product (..., 4) x (..., 4) -> (..., 4); matrix(q1 q2) = matrix(q1) matrix(q2)."""
  xp = namespace(q1, q2)
  q1, q2 = as_float_array(xp, q1), as_float_array(xp, q2)
  w1, x1, y1, z1 = (q1[..., i] for i in range(4))
  w2, x2, y2, z2 = (q2[..., i] for i in range(4))
  return xp.stack([
      w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
      w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
      w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
      w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], axis=-1)


def axis_angle_to_quaternion(axis_angle):
  """(..., 3) rotation vectors -> (..., 4) unit quaternions (w, x, y, z); smooth at zero."""
  xp = namespace(axis_angle)
  aa = as_float_array(xp, axis_angle)
  theta_sq = xp.sum(aa * aa, axis=-1, keepdims=True)
  small = theta_sq < _SMALL_ANGLE_SQ
  theta = xp.sqrt(xp.where(small, 1.0, theta_sq))
  # sin(t/2) / t and its Taylor series 1/2 - t^2/48.
  sinc_half = xp.where(small, 0.5 - theta_sq / 48.0, xp.sin(0.5 * theta) / theta)
  w = xp.where(small, 1.0 - theta_sq / 8.0, xp.cos(0.5 * theta))
  return xp.concatenate([w, aa * sinc_half], axis=-1)


def quaternion_to_axis_angle(quaternion):
  """(..., 4) quaternions (w, x, y, z) -> (..., 3) rotation vectors with angle in [0, pi].

  Uses angle = 2 atan2(|v|, w), well conditioned for every angle including pi.
  """
  xp = namespace(quaternion)
  q = as_float_array(xp, quaternion)
  q = xp.where(q[..., :1] < 0, -q, q)
  w, v = q[..., :1], q[..., 1:]
  v_sq = xp.sum(v * v, axis=-1, keepdims=True)
  small = v_sq < _SMALL_ANGLE_SQ * 1e-2
  v_norm = xp.sqrt(xp.where(small, 1.0, v_sq))
  safe_w = xp.where(small, xp.maximum(w, 1e-6), w)  # w ~ |q| when v is small
  # 2 atan2(n, w) / n -> 2/w (1 - n^2 / (3 w^2)) as n -> 0.
  scale = xp.where(small, 2.0 / safe_w * (1.0 - v_sq / (3.0 * safe_w * safe_w)),
                   2.0 * xp.arctan2(v_norm, w) / v_norm)
  return v * scale


def matrix_to_axis_angle(matrix):
  """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors, angle in [0, pi]."""
  return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rotation_about_axis(angle, axis: str):
  """Right-handed rotation by `angle` (...) radians about 'x', 'y' or 'z' -> (..., 3, 3)."""
  if axis not in _AXES:
    raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")
  xp = namespace(angle)
  angle = as_float_array(xp, angle)
  c, s = xp.cos(angle), xp.sin(angle)
  one, zero = xp.ones_like(angle), xp.zeros_like(angle)
  if axis == "x":
    rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
  elif axis == "y":
    rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
  else:
    rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
  return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(angles, axes: str):
  """R = R_{axes[0]}(a0) @ R_{axes[1]}(a1) @ R_{axes[2]}(a2).

  Args:
    angles: (..., 3) radians, one per letter of `axes`.
    axes: three letters from 'xyz', e.g. "zyx" (BVH's Zrot Yrot Xrot is "zyx").

  Returns:
    (..., 3, 3) rotation matrices.
  """
  if len(axes) != 3 or any(a not in _AXES for a in axes):
    raise ValueError(f"axes must be three letters from 'xyz' such as 'zyx', got {axes!r}")
  xp = namespace(angles)
  angles = as_float_array(xp, angles)
  if angles.shape[-1:] != (3,):
    raise ValueError(f"angles must have a last dimension of 3, got shape {angles.shape}")
  r0, r1, r2 = (rotation_about_axis(angles[..., i], axes[i]) for i in range(3))
  return r0 @ r1 @ r2


def matrix_to_rotation_6d(matrix):
  """(..., 3, 3) -> (..., 6): the first two columns, [R[:, 0], R[:, 1]] (Zhou et al. 2019)."""
  xp = namespace(matrix)
  m = as_float_array(xp, matrix)
  return xp.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rotation_6d_to_matrix(rotation_6d):
  """(..., 6) two unnormalised columns -> (..., 3, 3) by Gram-Schmidt (Zhou et al. 2019).

  Column 0 is the first vector normalised; column 1 the second with its column-0 component
  removed, normalised; column 2 their cross product.
  """
  xp = namespace(rotation_6d)
  r = as_float_array(xp, rotation_6d)
  b1 = _safe_normalize(xp, r[..., :3])
  a2 = r[..., 3:]
  b2 = _safe_normalize(xp, a2 - xp.sum(b1 * a2, axis=-1, keepdims=True) * b1)
  b3 = xp.cross(b1, b2)
  return xp.stack([b1, b2, b3], axis=-1)


def random_rotation(key: jax.Array, shape: Sequence[int] = (), dtype=jnp.float32) -> jax.Array:
  """Rotations uniform over SO(3) (Haar measure) -> (*shape, 3, 3).

  A standard normal 4-vector normalised is uniform on the unit 3-sphere, and the unit
  quaternions' double cover maps that uniform measure to the uniform one on SO(3).
  """
  q = jax.random.normal(key, (*tuple(shape), 4), dtype=dtype)
  return quaternion_to_matrix(q)


def random_azimuth_elevation(
    key: jax.Array,
    shape: Sequence[int] = (),
    azimuth_range: tuple[float, float] = (-math.pi, math.pi),
    elevation_range: tuple[float, float] = (-math.pi / 9, math.pi / 9),
    vertical_axis: str = "y",
    dtype=jnp.float32) -> jax.Array:
  """R = R_x(elevation) @ R_vertical(azimuth), both angles uniform in their ranges.

  In camera coordinates (x right, y down, z forward) the azimuth turns the subject about the
  vertical axis and the elevation then tilts it towards or away from the camera, as in
  Chen et al. 2019's random virtual cameras.

  Args:
    key: PRNG key.
    shape: batch shape.
    azimuth_range: (low, high) radians about `vertical_axis`.
    elevation_range: (low, high) radians about x.
    vertical_axis: 'x', 'y' or 'z'.
    dtype: float dtype of the result.

  Returns:
    (*shape, 3, 3) rotation matrices.
  """
  if vertical_axis not in _AXES:
    raise ValueError(f"vertical_axis must be one of {_AXES}, got {vertical_axis!r}")
  for name, (low, high) in (("azimuth_range", azimuth_range),
                            ("elevation_range", elevation_range)):
    if not low <= high:
      raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
  key_az, key_el = jax.random.split(key)
  shape = tuple(shape)
  azimuth = jax.random.uniform(key_az, shape, dtype, azimuth_range[0], azimuth_range[1])
  elevation = jax.random.uniform(key_el, shape, dtype, elevation_range[0], elevation_range[1])
  return rotation_about_axis(elevation, "x") @ rotation_about_axis(azimuth, vertical_axis)
