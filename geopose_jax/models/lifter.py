"""The 2D -> 3D lifter of Chen et al. (CVPR 2019) and its 2D input convention.

The lifter sees a 2D pose normalised as in the paper (`normalize_pose_2d`: root at the
origin, scaled so that the mean joint-to-root distance is 1/c) and predicts one depth
offset d_j per joint. The 3D pose is the perspective unprojection of the input with unit
focal length (`unproject`):

    z_j = max(0, c + d_j) + 1,      X_j = (x_j z_j, y_j z_j, z_j).

With c = 10 a body of 2D radius 1/c stands about c units from the camera, so the lifted
body has a radius of about one unit. The x, y of every lifted joint are fixed by its 2D
input and its depth: the network only chooses depths, and projecting the lifted pose
(`X_xy / X_z`) gives back the input exactly.

Also here: `DomainAdapter2D`, a residual MLP that maps 2D poses of another domain (another
detector, in-the-wild footage) into the 2D distribution the lifter was trained on; it is
trained adversarially against a 2D pose discriminator (see tasks/lifter.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from geopose_jax.models.dropout import Dropout

ROOT = 0
NUM_JOINTS = 17

# The unofficial PyTorch code initialises every Linear with Xavier-normal weights, zero bias.
dense_init = nn.initializers.xavier_normal()


def normalize_pose_2d(pose_2d: jax.Array, depth_offset: float = 10.0,
                      root: int = ROOT, eps: float = 1e-8) -> jax.Array:
  """Root at the origin, scaled so that the mean joint-to-root distance is 1 / c.

  The mean runs over the non-root joints (the root's own distance, always 0, is left out).

  Args:
    pose_2d: (..., J, 2) 2D pose in any units (normalised screen coordinates, pixels).
    depth_offset: c.
    root: index of the root joint.
    eps: guards against an all-zero pose (which then stays all zero).

  Returns:
    (..., J, 2) normalised pose.
  """
  centred = pose_2d - pose_2d[..., root:root + 1, :]
  dist = safe_norm(centred)                                           # (..., J)
  num_others = pose_2d.shape[-2] - 1
  mean_dist = jnp.sum(dist, axis=-1, keepdims=True) / num_others       # (..., 1)
  return centred / (depth_offset * jnp.maximum(mean_dist, eps))[..., None]


def safe_norm(v: jax.Array) -> jax.Array:
  """(..., D) -> (...,) Euclidean norm whose gradient at the zero vector is 0, not NaN."""
  sq = jnp.sum(jnp.square(v), axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def depth_from_offsets(offsets: jax.Array, depth_offset: float = 10.0) -> jax.Array:
  """(..., J) network outputs d -> (..., J) depths z = max(0, c + d) + 1 (always >= 1)."""
  return jax.nn.relu(depth_offset + offsets) + 1.0


def unproject(pose_2d: jax.Array, depth: jax.Array) -> jax.Array:
  """Perspective unprojection with unit focal length.

  Args:
    pose_2d: (..., J, 2) image-plane coordinates (x/z, y/z).
    depth: (..., J) depth z of each joint.

  Returns:
    (..., J, 3) points (x z, y z, z).
  """
  return jnp.concatenate([pose_2d * depth[..., None], depth[..., None]], axis=-1)


def project(points: jax.Array, min_depth: float = 1e-3) -> jax.Array:
  """Perspective projection with unit focal length: (..., J, 3) -> (..., J, 2) = xy / z.

  Depths below `min_depth` are clamped (a rotated pose may swing a joint behind the camera
  early in training; the clamp keeps the projection finite instead of flipping its sign).
  """
  return points[..., :2] / jnp.maximum(points[..., 2:3], min_depth)


class ResidualBlock(nn.Module):
  """x + [Dense, (BatchNorm), ReLU, Dropout] x 2, as in Martinez et al. 2017."""
  features: int
  dropout: float = 0.5
  use_batch_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = x
    for _ in range(2):
      y = nn.Dense(self.features, kernel_init=dense_init)(y)
      if self.use_batch_norm:
        y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(y)
      y = nn.relu(y)
      y = Dropout(self.dropout, deterministic=not train)(y)
    return x + y


class Lifter(nn.Module):
  """Residual MLP: normalised 2D pose -> 3D pose by one depth per joint.

  Linear 2J -> F + BN + ReLU + Dropout, `num_blocks` residual blocks, Linear F -> J depth
  offsets, then `depth_from_offsets` and `unproject`.

  Attributes:
    features: hidden width F (1024 in the paper).
    num_blocks: residual blocks (4).
    dropout: dropout rate (0.5).
    depth_offset: c (10).
    num_joints: J, 17 (Human3.6M, MPI-INF-3DHP mapped) or 15 (HumanEva-I).
  """
  features: int = 1024
  num_blocks: int = 4
  dropout: float = 0.5
  depth_offset: float = 10.0
  num_joints: int = NUM_JOINTS

  @nn.compact
  def __call__(self, pose_2d: jax.Array, train: bool = False) -> jax.Array:
    """(B, J, 2) normalised 2D pose -> (B, J, 3) lifted pose in lifter units."""
    num_joints = self.num_joints
    if pose_2d.shape[-2:] != (num_joints, 2):
      raise ValueError(f"Lifter(num_joints={num_joints}) expects 2D poses (B, {num_joints}, 2), "
                       f"got shape {pose_2d.shape}")
    y = pose_2d.reshape(pose_2d.shape[:-2] + (2 * num_joints,))
    y = nn.Dense(self.features, kernel_init=dense_init)(y)
    y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(y)
    y = nn.relu(y)
    y = Dropout(self.dropout, deterministic=not train)(y)
    for _ in range(self.num_blocks):
      y = ResidualBlock(self.features, self.dropout)(y, train)
    # A near-zero head: the untrained lifter is close to the constant-depth lift (every joint
    # at depth c + 1). With Xavier init and train-mode BatchNorm the first offsets spread over
    # +-10, rotations then swing joints behind the camera and the cycle diverges.
    offsets = nn.Dense(num_joints, kernel_init=nn.initializers.normal(1e-3),
                       name="depth_head")(y)
    return unproject(pose_2d, depth_from_offsets(offsets, self.depth_offset))


class DomainAdapter2D(nn.Module):
  """Residual MLP on 2D poses: x + MLP(x), the identity at initialisation.

  Maps normalised 2D poses of a source domain into the lifter's training distribution.
  The output layer starts at zero so that an untrained adapter changes nothing, and the
  adversarial game starts from the unadapted poses.

  Attributes:
    features: hidden width.
    num_blocks: residual blocks (no BatchNorm: the adapter must not depend on batch mix).
  """
  features: int = 256
  num_blocks: int = 2

  @nn.compact
  def __call__(self, pose_2d: jax.Array, train: bool = False) -> jax.Array:
    """(B, J, 2) -> (B, J, 2)."""
    flat = pose_2d.reshape(pose_2d.shape[:-2] + (-1,))
    y = nn.relu(nn.Dense(self.features, kernel_init=dense_init)(flat))
    for _ in range(self.num_blocks):
      y = ResidualBlock(self.features, dropout=0.0, use_batch_norm=False)(y, train)
    delta = nn.Dense(flat.shape[-1], kernel_init=nn.initializers.zeros, name="residual")(y)
    return pose_2d + delta.reshape(pose_2d.shape)
