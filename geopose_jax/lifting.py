"""Lifting 2D poses to 3D without a scale: the geometric self-supervision cycle of Chen et
al. (CVPR 2019), the scale normalisation and the constant-depth baseline, as pure functions.

    Y  = L(x)                        lift
    Y' = R (Y - T) + T               a random virtual camera (geometry/virtual_camera.py)
    x~ = proj(Y')                    the synthetic view
    Y~ = L(x~)                       lifted again
    x^ = proj(R^T (Y~ - T~) + T~)    back into the original camera

and the 2D / 3D consistency losses ||x^ - x||^2 and ||Y~ - Y'||^2. The lifter task
(tasks/lifter.py) adds the adversarial terms and the updates.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from geopose_jax.geometry.virtual_camera import rotate_about, rotation_pivot
from geopose_jax.models import lifter as lifter_lib

LiftFn = Callable[[jax.Array], jax.Array]


def cycle(lift: LiftFn, pose_2d: jax.Array, rotation: jax.Array, *, pivot: str = "root",
          depth_offset: float = 10.0, lifted: jax.Array | None = None,
          min_depth: float = 1.0) -> dict[str, jax.Array]:
  """Lift -> rotate -> project -> lift -> rotate back -> project.

  Args:
    lift: (B, J, 2) normalised 2D -> (B, J, 3) lifted pose.
    pose_2d: (B, J, 2) normalised 2D input x.
    rotation: (B, 3, 3) virtual camera rotation R.
    pivot: see `virtual_camera.rotation_pivot`.
    depth_offset: c.
    lifted: L(x) when already computed (B, J, 3); lifted here otherwise.
    min_depth: projections clamp depths below this (the lifter's own depths are >= 1; a
      rotation may swing a joint closer, or behind the camera, while training is young).

  Returns:
    dict with `lifted` Y, `rotated` Y', `projected` x~ (B, J, 2), `relifted` Y~,
    `reprojected` x^ (B, J, 2).
  """
  lifted = lift(pose_2d) if lifted is None else lifted
  pivot_1 = rotation_pivot(lifted, pivot, depth_offset)
  rotated = rotate_about(lifted, rotation, pivot_1)
  projected = lifter_lib.project(rotated, min_depth)
  relifted = lift(projected)
  pivot_2 = rotation_pivot(relifted, pivot, depth_offset)
  back = rotate_about(relifted, jnp.swapaxes(rotation, -1, -2), pivot_2)
  return dict(lifted=lifted, rotated=rotated, projected=projected, relifted=relifted,
              reprojected=lifter_lib.project(back, min_depth))


def consistency_losses(out: dict[str, jax.Array], pose_2d: jax.Array,
                       depth_offset: float = 10.0) -> dict[str, jax.Array]:
  """Mean squared 2D (||x^ - x||^2) and 3D (||Y~ - Y'||^2) cycle errors, per coordinate.

  Both are measured in body units: the 2D error times c (normalised poses have mean root
  distance 1/c), the 3D error as is (a lifted body has a radius of about 1), so that the
  weights of the two terms do not depend on c.
  """
  return dict(
      cycle_2d=jnp.mean(jnp.square(depth_offset * (out["reprojected"] - pose_2d))),
      cycle_3d=jnp.mean(jnp.square(out["relifted"] - out["rotated"])))


def normalize_pose_3d(pose: jax.Array) -> jax.Array:
  """(..., J, 3) -> root-relative, scaled to unit mean joint-to-root distance."""
  centred = pose - pose[..., lifter_lib.ROOT:lifter_lib.ROOT + 1, :]
  dist = jnp.sum(lifter_lib.safe_norm(centred), axis=-1) / (pose.shape[-2] - 1)
  return centred / jnp.maximum(dist, 1e-8)[..., None, None]


def constant_depth_lift(pose_2d: jax.Array, depth_offset: float = 10.0) -> jax.Array:
  """The baseline: every joint at the root's depth, a flat pose facing the camera."""
  x = lifter_lib.normalize_pose_2d(pose_2d, depth_offset)
  return lifter_lib.unproject(x, jnp.full(x.shape[:-1], depth_offset + 1.0, x.dtype))


def in_millimetres(lifted: jax.Array, body_scale_mm: float) -> jax.Array:
  """(B, J, 3) lifted pose (any scale) -> root-centred, mean joint-to-root distance
  `body_scale_mm`: the one body size a scale-free lifter is evaluated with."""
  return normalize_pose_3d(lifted) * body_scale_mm


# What a training batch may carry besides the keys its objective reads: integer metadata.
METADATA_KEYS = frozenset({"subject", "action", "camera", "sequence", "valid"})


def check_batch_keys(batch: dict, needed: frozenset, what: str) -> None:
  """Training batches carry the keys the objective reads, integer metadata, and nothing else.

  This is what keeps 3D labels out of self-supervised training: a batch with any other key
  (`pose_3d_cam`, `pose_3d`, ...) is refused.
  """
  keys = set(batch)
  if not needed <= keys or keys - needed - METADATA_KEYS:
    raise ValueError(f"{what} training batch must carry {sorted(needed)} (and optionally "
                     f"{sorted(METADATA_KEYS)}), got {sorted(keys)}; the self-supervised "
                     "lifter may not see 3D labels")
