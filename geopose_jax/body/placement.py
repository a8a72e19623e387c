"""Putting a model-frame body into a dataset's cameras, and the masks it is compared with.

The body model (SMPL or the procedural body) is y-up in metres; the multi-view datasets'
cameras are y-down in millimetres. Silhouettes are rendered at a pooled resolution, with
intrinsics scaled to match.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from geopose_jax.errors import ConfigError

Y_UP_TO_CAMERA = np.diag([1.0, -1.0, -1.0]).astype(np.float32)   # half turn about x


def body_in_camera(vertices, joints, root_cam):
  """Model-frame body (metres, y up) -> camera frame (mm, y down), pelvis on `root_cam`.

  Args:
    vertices: (B, V, 3); joints: (B, J, 3); root_cam: (B, 3) ground-truth root (mm).

  Returns:
    vertices (B, V, 3) and joints (B, J, 3) in the camera frame.
  """
  flip = jnp.asarray(Y_UP_TO_CAMERA)
  pelvis = joints[:, :1]
  to_cam = lambda x: (x - pelvis) @ flip * 1000.0 + root_cam[:, None]  # noqa: E731
  return to_cam(vertices), to_cam(joints)


def camera_to_world(points, R, t):
  """(B, N, 3) camera-frame points, (B, 3, 3) world->camera, (B, 3) centres -> world."""
  return points @ R + t[:, None]


def scale_intrinsics(K, factor: float):
  """Intrinsics of an image resized by `factor` (pixel centres at integer coordinates)."""
  scale = jnp.asarray([[factor, 0.0, 0.5 * factor - 0.5], [0.0, factor, 0.5 * factor - 0.5],
                       [0.0, 0.0, 1.0]], K.dtype)
  return scale @ K


def pool_masks(masks, size: int):
  """(..., H, W) {0, 1} masks -> (..., size, size) coverage fractions (H = W = k size)."""
  h = masks.shape[-1]
  if h % size:
    raise ConfigError(f"config.loss.silhouette_size={size} must divide the mask size {h}")
  k = h // size
  m = masks.astype(jnp.float32).reshape(masks.shape[:-2] + (size, k, size, k))
  return m.mean(axis=(-3, -1))
