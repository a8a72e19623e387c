"""Random virtual cameras around a lifted pose: the rotation of the lifting cycle.

A lifted pose Y (camera frame, row-vector points) is seen from a virtual camera by
Y' = R (Y - T) + T, with R an azimuth about the vertical followed by an elevation, and T
the pivot of the turn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.geometry import rotations

ROOT = 0


def rotate_about(points: jax.Array, rotation: jax.Array, pivot: jax.Array) -> jax.Array:
  """R (X - T) + T for row-vector points.

  Args:
    points: (B, J, 3).
    rotation: (B, 3, 3).
    pivot: (B, 1, 3) or (B, J, 3) broadcastable.

  Returns:
    (B, J, 3).
  """
  return jnp.einsum("bij,bkj->bki", rotation, points - pivot) + pivot


def virtual_camera_rotation(key: jax.Array, num: int, azimuth_range=(-np.pi, np.pi),
                            elevation_range=(-np.pi / 9, np.pi / 9), vertical_axis: str = "y",
                            camera_pitch: float = 0.0) -> jax.Array:
  """(num, 3, 3) random rotations: azimuth about the vertical, then elevation about x.

  With `camera_pitch` = 0 this is `rotations.random_azimuth_elevation`: the vertical is the
  camera's y axis. A camera looking down by `camera_pitch` radians (Human3.6M's look down by
  11-16 degrees) sees the world's vertical tilted by that much about x; turning the body
  about the camera's own y axis would then show it from below after half a turn, a view
  no real camera has. The azimuth is applied about the tilted vertical instead:
  R = R_x(elevation) R_x(pitch) R_vertical(azimuth) R_x(pitch)^T.
  """
  if camera_pitch == 0.0:
    return rotations.random_azimuth_elevation(
        key, (num,), tuple(azimuth_range), tuple(elevation_range), vertical_axis)
  if vertical_axis != "y":
    raise ValueError("camera_pitch needs vertical_axis='y' (a tilt of the camera's y axis)")
  tilt = rotations.rotation_about_axis(jnp.asarray(camera_pitch, jnp.float32), "x")
  key_az, key_el = jax.random.split(key)
  azimuth = jax.random.uniform(key_az, (num,), jnp.float32, *azimuth_range)
  elevation = jax.random.uniform(key_el, (num,), jnp.float32, *elevation_range)
  return (rotations.rotation_about_axis(elevation, "x") @ tilt
          @ rotations.rotation_about_axis(azimuth, "y") @ tilt.T)


def rotation_pivot(points: jax.Array, kind: str, depth_offset: float) -> jax.Array:
  """(B, J, 3) lifted pose -> (B, 1, 3) centre of the virtual-camera rotation.

  'root': the lifted root joint, so the reprojected pose stays root-centred like the real
  normalised poses a discriminator sees. 'fixed': (0, 0, c), as written in Chen et al.
  """
  if kind == "root":
    return points[:, ROOT:ROOT + 1, :]
  if kind == "fixed":
    return jnp.broadcast_to(jnp.asarray([0.0, 0.0, depth_offset], points.dtype),
                            points[:, :1, :].shape)
  raise ValueError(f"rotation pivot must be 'root' or 'fixed', got {kind!r}")
