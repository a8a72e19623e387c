"""Discriminators of the self-supervised lifter (Chen et al. CVPR 2019).

`PoseDiscriminator` scores single normalised 2D poses (real ones from the data against
reprojections of rotated lifted poses). `TemporalDiscriminator` scores the motion between
two consecutive frames, i.e. the frame difference x_t - x_{t+1}. Both are residual MLPs
without BatchNorm (WGAN-GP's penalty is per sample, which BatchNorm would break):
Linear 2J -> F + ReLU + Dropout, `num_blocks` residual blocks, Linear F -> 1. They return
raw scores (logits); the losses in tasks/lifter.py apply the sigmoid where the standard GAN
needs it, so that one module serves both the standard GAN and WGAN-GP.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from geopose_jax.models.dropout import Dropout
from geopose_jax.models.lifter import ResidualBlock, dense_init


class PoseDiscriminator(nn.Module):
  """(B, J, 2) normalised 2D poses -> (B,) scores.

  Attributes:
    features: hidden width (1024).
    num_blocks: residual blocks (3).
    dropout: dropout rate inside the blocks.
  """
  features: int = 1024
  num_blocks: int = 3
  dropout: float = 0.0

  @nn.compact
  def __call__(self, pose_2d: jax.Array, train: bool = False) -> jax.Array:
    y = pose_2d.reshape(pose_2d.shape[:-2] + (-1,))
    y = nn.relu(nn.Dense(self.features, kernel_init=dense_init)(y))
    y = Dropout(self.dropout, deterministic=not train)(y)
    for _ in range(self.num_blocks):
      y = ResidualBlock(self.features, self.dropout, use_batch_norm=False)(y, train)
    return nn.Dense(1, kernel_init=dense_init)(y)[..., 0]


class TemporalDiscriminator(nn.Module):
  """Scores the motion between consecutive frames from their difference.

  (B, J, 2) pose at t, (B, J, 2) pose at t + 1 -> (B,) scores of x_t - x_{t+1}.
  """
  features: int = 1024
  num_blocks: int = 3
  dropout: float = 0.0

  @nn.compact
  def __call__(self, pose_2d: jax.Array, pose_2d_next: jax.Array,
               train: bool = False) -> jax.Array:
    return PoseDiscriminator(self.features, self.num_blocks, self.dropout,
                             name="difference")(pose_2d - pose_2d_next, train)
