"""Cameras: world <-> camera frames, Human3.6M distorted and pinhole projection, calibration.

Conventions (shared by the whole project):
- `R` is the world->camera rotation and `t` the camera centre in world millimetres, so a
  world point X maps to X_cam = R (X - t). Camera axes: x right, y down, z forward.
- Point sets are row vectors (..., J, 3); a rotation R acts on them as x R^T.
- Functions accept numpy (host pipelines) or JAX arrays and return the same kind.

The Human3.6M calibration file stores the *camera-to-world* quaternion and the camera
centre, with X_cam = R_c2w^T (X - t); hence Camera.R = quaternion_to_matrix(q)^T here.
"""

import functools
import importlib.resources
import json
from typing import Any

import flax.struct
import jax
import numpy as np

from geopose_jax.geometry._array import as_float_array, namespace
from geopose_jax.geometry.rotations import quaternion_to_matrix

# Human3.6M camera order, as in the calibration file and in VideoPose3D's 2D files.
H36M_CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
_CALIBRATION_RESOURCE = "h36m_cameras.json"


@flax.struct.dataclass
class Camera:
  """A calibrated camera, or a stack of them (leading dimensions shared by every field).

  Attributes:
    R: (..., 3, 3) world->camera rotation.
    t: (..., 3) camera centre in world coordinates (mm).
    f: (..., 2) focal lengths (fx, fy) in pixels.
    c: (..., 2) principal point (cx, cy) in pixels.
    k: (..., 3) radial distortion k1, k2, k3.
    p: (..., 2) tangential distortion p1, p2.
    res: (..., 2) image size (width, height) in pixels.
  """
  R: Any
  t: Any
  f: Any
  c: Any
  k: Any
  p: Any
  res: Any

  def __getitem__(self, index) -> "Camera":
    """Indexes every field's leading dimensions, e.g. `cameras[2]` of a stack of 4."""
    return jax.tree.map(lambda a: a[index], self)

  @property
  def intrinsic_matrix(self):
    """(..., 3, 3) pinhole K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (ignores distortion)."""
    xp = namespace(self.f, self.c)
    f, c = as_float_array(xp, self.f), as_float_array(xp, self.c)
    zero, one = xp.zeros_like(f[..., 0]), xp.ones_like(f[..., 0])
    return xp.stack([
        xp.stack([f[..., 0], zero, c[..., 0]], axis=-1),
        xp.stack([zero, f[..., 1], c[..., 1]], axis=-1),
        xp.stack([zero, zero, one], axis=-1)], axis=-2)


def _swap(xp, m):
  return xp.swapaxes(m, -1, -2)


def rotate_points(points, rotation):
  """Rotates row-vector points: (..., J, 3) x (..., 3, 3) -> (..., J, 3) = points R^T."""
  xp = namespace(points, rotation)
  return as_float_array(xp, points) @ _swap(xp, as_float_array(xp, rotation))


def world_to_camera(points, camera: Camera):
  """(..., J, 3) world points -> (..., J, 3) camera-frame points, X_cam = R (X - t)."""
  xp = namespace(points, camera.R, camera.t)
  points = as_float_array(xp, points)
  t = as_float_array(xp, camera.t)
  return rotate_points(points - t[..., None, :], camera.R)


def camera_to_world(points, camera: Camera):
  """(..., J, 3) camera-frame points -> (..., J, 3) world points, X = R^T X_cam + t."""
  xp = namespace(points, camera.R, camera.t)
  points = as_float_array(xp, points)
  return points @ as_float_array(xp, camera.R) + as_float_array(xp, camera.t)[..., None, :]


def project_distorted(points_cam, camera: Camera):
  """Human3.6M projection with radial and tangential distortion, as the original toolbox.

  x = clip(X/Z, -1, 1), y = clip(Y/Z, -1, 1), r2 = x^2 + y^2,
  radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3, tan = p1 x + p2 y,
  x' = x (radial + tan) + p1 r2, y' = y (radial + tan) + p2 r2, (u, v) = f (x', y') + c.

  Args:
    points_cam: (..., J, 3) camera-frame points (Z > 0 in front of the camera).
    camera: Camera whose fields broadcast against the leading dims of `points_cam`.

  Returns:
    (..., J, 2) pixel coordinates.
  """
  xp = namespace(points_cam, camera.f, camera.c, camera.k, camera.p)
  x_cam = as_float_array(xp, points_cam)
  xy = xp.clip(x_cam[..., :2] / x_cam[..., 2:3], -1.0, 1.0)
  k = as_float_array(xp, camera.k)[..., None, :]
  p = as_float_array(xp, camera.p)[..., None, :]
  r2 = xp.sum(xy * xy, axis=-1, keepdims=True)
  radial = 1.0 + k[..., 0:1] * r2 + k[..., 1:2] * r2 ** 2 + k[..., 2:3] * r2 ** 3
  tangential = xp.sum(p * xy, axis=-1, keepdims=True)
  distorted = xy * (radial + tangential) + p * r2
  f = as_float_array(xp, camera.f)[..., None, :]
  c = as_float_array(xp, camera.c)[..., None, :]
  return f * distorted + c


def project_pinhole(points_cam, f, c):
  """(..., J, 3) camera points -> (..., J, 2) pixels, f * (X/Z, Y/Z) + c.

  Args:
    points_cam: (..., J, 3).
    f: focal lengths, a scalar or (..., 2) broadcasting against the leading dims.
    c: principal point, a scalar or (..., 2).
  """
  xp = namespace(points_cam, f, c)
  x_cam = as_float_array(xp, points_cam)
  f, c = as_float_array(xp, f), as_float_array(xp, c)
  if f.ndim:
    f = f[..., None, :]
  if c.ndim:
    c = c[..., None, :]
  return f * (x_cam[..., :2] / x_cam[..., 2:3]) + c


def project_with_intrinsics(points_cam, intrinsics):
  """(..., J, 3) camera points, (..., 3, 3) K -> (..., J, 2) pixels: dehomogenised K X."""
  homogeneous = rotate_points(points_cam, intrinsics)  # row-vector K X
  return homogeneous[..., :2] / homogeneous[..., 2:3]


def relative_rotation(rotation_i, rotation_j):
  """Rotation taking camera i's frame to camera j's: R_j R_i^T, (..., 3, 3) each.

  With R_* world->camera, X_j = R_{j<-i} X_i for any direction (no translation term).
  """
  xp = namespace(rotation_i, rotation_j)
  return as_float_array(xp, rotation_j) @ _swap(xp, as_float_array(xp, rotation_i))


def normalize_screen_coordinates(points_px, w, h):
  """Pixels -> [-1, 1] across the width, aspect kept: x / w * 2 - [1, h / w].

  Args:
    points_px: (..., 2) pixel coordinates.
    w, h: image width and height, scalars or arrays broadcasting against points_px[..., 0].
  """
  xp = namespace(points_px, w, h)
  points_px = as_float_array(xp, points_px)
  w, h = as_float_array(xp, w), as_float_array(xp, h)
  offset = xp.stack([xp.ones_like(h), h / w], axis=-1)
  return points_px / w[..., None] * 2.0 - offset


def image_coordinates(points_norm, w, h):
  """Inverse of `normalize_screen_coordinates`: (x + [1, h / w]) * w / 2, (..., 2)."""
  xp = namespace(points_norm, w, h)
  points_norm = as_float_array(xp, points_norm)
  w, h = as_float_array(xp, w), as_float_array(xp, h)
  offset = xp.stack([xp.ones_like(h), h / w], axis=-1)
  return (points_norm + offset) * w[..., None] / 2.0


@functools.lru_cache(maxsize=1)
def _calibration() -> dict:
  resource = importlib.resources.files("geopose_jax") / "assets" / _CALIBRATION_RESOURCE
  text = resource.read_text(encoding="utf-8")
  return json.loads(text)


def h36m_subjects() -> tuple[str, ...]:
  """Subjects with extrinsics in the packaged calibration."""
  return tuple(_calibration()["extrinsics"])


def load_h36m_cameras(subject: str) -> Camera:
  """The 4 calibrated cameras of a Human3.6M subject, stacked (4,) in H36M_CAMERA_IDS order.

  Reads the packaged `geopose_jax/assets/h36m_cameras.json`. Fields are float32 numpy.

  Raises:
    ValueError: if `subject` has no calibration.
  """
  calibration = _calibration()
  extrinsics = calibration["extrinsics"]
  if subject not in extrinsics:
    raise ValueError(f"no Human3.6M calibration for subject {subject!r}; "
                     f"known subjects: {tuple(extrinsics)}")
  intrinsics = {cam["id"]: cam for cam in calibration["intrinsics"]}
  order = tuple(calibration["conventions"]["camera_order"])
  if order != H36M_CAMERA_IDS:
    raise ValueError(f"{_CALIBRATION_RESOURCE}: camera order {order} differs from "
                     f"H36M_CAMERA_IDS {H36M_CAMERA_IDS}")
  f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
  orientation = np.asarray([e["orientation"] for e in extrinsics[subject]], np.float64)
  camera_to_world = quaternion_to_matrix(orientation)
  return Camera(
      R=f32(np.swapaxes(camera_to_world, -1, -2)),
      t=f32([e["translation"] for e in extrinsics[subject]]),
      f=f32([intrinsics[i]["focal_length"] for i in order]),
      c=f32([intrinsics[i]["center"] for i in order]),
      k=f32([intrinsics[i]["radial_distortion"] for i in order]),
      p=f32([intrinsics[i]["tangential_distortion"] for i in order]),
      res=f32([[intrinsics[i]["res_w"], intrinsics[i]["res_h"]] for i in order]))
