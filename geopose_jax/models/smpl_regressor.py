"""SMPL parameters from the frozen NVS latent (the SMPL-from-latent method, METHODS.md §3).

Input: the encoder's geometry latent (B, 200, 3) flattened and its appearance vector,
concatenated (600 + 128 with the paper's network). Trunk: `trunk_layers` x [Linear, ReLU,
BatchNorm]; two heads of [Linear, ReLU, BatchNorm, Linear]: the pose theta and the shape
beta.

Pose output (`pose_rep`):
  'rotation_6d' (default): 6 numbers per joint (Zhou et al.), added to the identity's, so an
    untrained head predicts the rest pose; every rotation is reachable.
  'tanh_axis_angle' (the original): Tanh on 72 axis-angle numbers, which caps every
    component at 1 rad — the root cannot turn away from the camera (the original's
    documented failure case).
Shape output: unbounded betas (the original's Tanh capped them at +-1 while real bodies
reach about +-2); the adversarial prior keeps them plausible.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from geopose_jax.geometry import rotations

POSE_REPRESENTATIONS = ("rotation_6d", "tanh_axis_angle")


def identity_6d(num_joints: int) -> jax.Array:
  """(num_joints, 6) 6D encoding of the identity (matrix_to_rotation_6d(I))."""
  return jnp.broadcast_to(rotations.matrix_to_rotation_6d(jnp.eye(3)), (num_joints, 6))


class _Block(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(nn.Dense(self.features)(x))
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)


class SMPLRegressor(nn.Module):
  """(B, P, 3) geometry latent, (B, A) appearance -> rotations (B, J, 3, 3), beta (B, S).

  Attributes:
    num_joints: 24 for SMPL.
    num_betas: shape coefficients predicted.
    width: trunk and head width (1024).
    trunk_layers: trunk depth (4).
    pose_rep: 'rotation_6d' or 'tanh_axis_angle' (see the module docstring).
    use_appearance: feed the appearance vector too (the original does).
  """
  num_joints: int = 24
  num_betas: int = 10
  width: int = 1024
  trunk_layers: int = 4
  pose_rep: str = "rotation_6d"
  use_appearance: bool = True

  @nn.compact
  def __call__(self, geometry: jax.Array, appearance: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    if self.pose_rep not in POSE_REPRESENTATIONS:
      raise ValueError(f"pose_rep={self.pose_rep!r}; use one of {POSE_REPRESENTATIONS}")
    x = geometry.reshape(geometry.shape[0], -1)
    if self.use_appearance:
      x = jnp.concatenate([x, appearance.reshape(appearance.shape[0], -1)], axis=-1)
    for _ in range(self.trunk_layers):
      x = _Block(self.width)(x, train)
    small = nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal")
    pose = _Block(self.width, name="pose_hidden")(x, train)
    shape = _Block(self.width, name="shape_hidden")(x, train)
    beta = nn.Dense(self.num_betas, kernel_init=small, name="shape_out")(shape)
    if self.pose_rep == "rotation_6d":
      out = nn.Dense(6 * self.num_joints, kernel_init=small, name="pose_out")(pose)
      six = out.reshape(-1, self.num_joints, 6) + identity_6d(self.num_joints)
      return rotations.rotation_6d_to_matrix(six), beta
    out = nn.Dense(3 * self.num_joints, kernel_init=small, name="pose_out")(pose)
    theta = jnp.tanh(out).reshape(-1, self.num_joints, 3)
    return rotations.axis_angle_to_matrix(theta), beta
