"""The adversarial SMPL pose prior: a generator and a discriminator over (theta, beta).

Following the SMPL-from-latent method (METHODS.md §3): D is an MLP 1024 -> 1024 (ReLU, then
BatchNorm) -> a real/fake score; G maps z (20) -> 256 (ReLU) -> pose and shape. D returns
one logit (a two-way softmax, as in the original, carries the same information).

What D judges (`prior_features`): each body joint's rotation as its 3x3 matrix (continuous,
unlike axis-angle, which jumps at pi) and the betas. The global orientation is left out by
default: the original also scored it, but it is a camera-dependent quantity that the prior
data (other people, other cameras) says nothing about, so it pulled predictions towards the
data's headings. `include_global=True` restores the original behaviour.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from geopose_jax.geometry import rotations as rotations_lib

NUM_JOINTS = 24


def prior_features(rotations, beta, include_global: bool = False) -> jax.Array:
  """(B, 24, 3, 3) joint rotations, (B, S) betas -> (B, 9 * (23 or 24) + S) D inputs."""
  body = rotations if include_global else rotations[..., 1:, :, :]
  flat = body.reshape(body.shape[:-3] + (-1,))
  return jnp.concatenate([flat, beta.astype(flat.dtype)], axis=-1)


def feature_size(num_betas: int, include_global: bool = False) -> int:
  return 9 * (NUM_JOINTS if include_global else NUM_JOINTS - 1) + num_betas


class PriorDiscriminator(nn.Module):
  """(B, F) prior features -> (B,) logits (high = plausible)."""
  features: int = 1024

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for _ in range(2):
      x = nn.relu(nn.Dense(self.features)(x))
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(1)(x)[..., 0]


class PriorGenerator(nn.Module):
  """(B, latent) noise -> theta (B, 24, 3) axis-angle and beta (B, S).

  The global orientation is generated only when the prior judges it (`include_global`);
  otherwise it is zero.
  """
  num_betas: int = 10
  hidden: int = 256
  include_global: bool = False

  @nn.compact
  def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    joints = NUM_JOINTS if self.include_global else NUM_JOINTS - 1
    h = nn.relu(nn.Dense(self.hidden)(z))
    out = nn.Dense(3 * joints + self.num_betas)(h)
    theta = out[..., :3 * joints].reshape(out.shape[:-1] + (joints, 3))
    if not self.include_global:
      theta = jnp.concatenate([jnp.zeros_like(theta[..., :1, :]), theta], axis=-2)
    return theta, out[..., 3 * joints:]


def generated_features(theta, beta, include_global: bool = False) -> jax.Array:
  """Generator output -> prior features (axis-angle through Rodrigues)."""
  return prior_features(rotations_lib.axis_angle_to_matrix(theta), beta, include_global)


def frozen_prior_logits(num_betas: int, include_global: bool, disc_features: int):
  """A trained discriminator used as a fixed prior by another task (smpl).

  Args:
    num_betas, include_global, disc_features: the prior run's `model` settings.

  Returns:
    (variables {'params', 'batch_stats'}, rotations `(B, 24, 3, 3)`, beta `(B, S)`) ->
    `(B,)` logits; betas beyond the prior's are dropped, missing ones are zero.
  """
  discriminator = PriorDiscriminator(features=disc_features)

  def logits(variables, rotations, beta):
    if beta.shape[-1] < num_betas:
      beta = jnp.pad(beta, ((0, 0), (0, num_betas - beta.shape[-1])))
    features = prior_features(rotations, beta[:, :num_betas], include_global)
    return discriminator.apply(variables, features, False)

  return logits


def init_discriminator(disc_features: int, num_betas: int, include_global: bool,
                       rng: jax.Array):
  """Fresh {'params', 'batch_stats'} of a discriminator (the shapes a prior is loaded into)."""
  features = jnp.zeros((2, feature_size(num_betas, include_global)))
  return PriorDiscriminator(features=disc_features).init(rng, features, False)
