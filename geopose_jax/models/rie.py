"""RIE: relative information encoding for video 3D pose lifting (Shan et al., ACM MM 2021).

A window of `receptive_field` normalised 2D frames is split into five joint groups; each group
gets its raw coordinates plus two relative encodings,
  positional: x - x_root (per frame), temporal: x - x_target (per joint, target = the frame
  predicted: the centre, or the last one when causal),
and its own strided temporal encoder (models/tcn.py's TemporalEncoder with LeakyReLU(0.2)).
A global MLP encodes the raw target frame. Stage 1 decodes each group from [local, global];
stages 2 and 3 add the Feature Fusion Module, one MLP per group over the other four groups'
local features, and decode from [local, fused, global]. The group outputs are put back in
Human3.6M-17 order.

Groups are named by the Human3.6M joints they hold (the original's LArm/RArm/LLeg/RLeg hold
the right arm 14-16, left arm 11-13, right leg 1-3 and left leg 4-6, in that order);
`JOINT_GROUPS` keeps the original's order, which fixes the Feature Fusion Module's input order.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.models.tcn import (BatchNorm, TemporalEncoder, check_filter_widths, leaky_relu,
                                    reshape_keep_batch, target_index, torch_bias_init,
                                    torch_kernel_init)

# (name, Human3.6M joints) in the original's order: Torso, LArm, RArm, LLeg, RLeg.
JOINT_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("torso", (0, 7, 8, 9, 10)),
    ("right_arm", (14, 15, 16)),
    ("left_arm", (11, 12, 13)),
    ("right_leg", (1, 2, 3)),
    ("left_leg", (4, 5, 6)),
)
GROUP_NAMES = tuple(name for name, _ in JOINT_GROUPS)
# Parameter subtrees trained in stage 1 and frozen in stage 2.
ENCODER_MODULES = tuple(f"local_encoder_{name}" for name in GROUP_NAMES) + ("global_encoder",)
NUM_JOINTS = 17
_CONCAT_ORDER = np.concatenate([joints for _, joints in JOINT_GROUPS])
_TO_H36M = np.argsort(_CONCAT_ORDER)


class FCBlock(nn.Module):
  """The original's FCBlock: Dense + BN + LReLU + Dropout, residual blocks, Dense out.

  Each residual block is 2 x [Dense, BN, LeakyReLU(0.2), Dropout] plus the identity.
  (B, C_in) -> (B, out_features).
  """
  out_features: int
  hidden: int = 1024
  num_blocks: int = 1
  dropout: float = 0.25

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)

    def layer(y, name):
      y = nn.Dense(self.hidden, kernel_init=torch_kernel_init,
                   bias_init=torch_bias_init(y.shape[-1]), name=name)(y)
      return drop(leaky_relu(BatchNorm(name=f"{name}_bn")(y, train, 0.1)))

    x = layer(x, "fc_in")
    for i in range(self.num_blocks):
      x = x + layer(layer(x, f"block_{i}_dense_1"), f"block_{i}_dense_2")
    return nn.Dense(self.out_features, kernel_init=torch_kernel_init,
                    bias_init=torch_bias_init(self.hidden), name="fc_out")(x)


def relative_encodings(windows: jax.Array, target: int) -> tuple[jax.Array, jax.Array]:
  """(N, T, J, 2) -> (positional, temporal), each (N, T, J, 2).

  positional = x - x[:, :, root]; temporal = x - x[:, target] (the predicted frame).
  """
  return windows - windows[:, :, :1], windows - windows[:, target:target + 1]


def group_inputs(windows: jax.Array, target: int) -> list[jax.Array]:
  """(N, T, 17, 2) -> per group (N, T, 6 n): [raw, positional, temporal] of its n joints."""
  positional, temporal = relative_encodings(windows, target)
  n, t = windows.shape[:2]
  out = []
  for _, joints in JOINT_GROUPS:
    idx = np.asarray(joints)
    parts = [reshape_keep_batch(a[:, :, idx], (n, t, 2 * len(joints)))
             for a in (windows, positional, temporal)]
    out.append(jnp.concatenate(parts, axis=-1))
  return out


class RIE(nn.Module):
  """(B, T, 17, 2) normalised 2D -> (B, T / field, 17, 3) root-relative camera-frame 3D (m).

  An input of n * field frames is read as n non-overlapping windows, each predicting its own
  target frame; training and evaluation feed exactly one window (T = field).

  Attributes:
    stage: 1 (encoders + decoders) or 2/3 (with the Feature Fusion Module).
    latent_dim: L, the size of local, global and fused features (256 for GT 2D, 512 CPN).
    channels: width of the temporal convolutions (256).
    frozen_encoders: run the local and global encoders in inference mode (running BatchNorm
      statistics, no dropout) even when training; stage 2's `freeze_batch_stats` option.
  """
  filter_widths: Sequence[int] = (3, 3, 3, 3, 3)
  channels: int = 256
  latent_dim: int = 256
  stage: int = 1
  causal: bool = False
  dropout: float = 0.2
  fc_hidden: int = 1024
  fc_dropout: float = 0.25
  frozen_encoders: bool = False

  @nn.compact
  def __call__(self, pose_2d: jax.Array, train: bool = False,
               bn_momentum: float | jax.Array = 0.1) -> jax.Array:
    if self.stage not in (1, 2, 3):
      raise ValueError(f"RIE stage must be 1, 2 or 3, got {self.stage}")
    widths = check_filter_widths(self.filter_widths)
    field = math.prod(widths)
    if pose_2d.ndim != 4 or pose_2d.shape[2:] != (NUM_JOINTS, 2) or pose_2d.shape[1] % field:
      raise ValueError(f"expected 2D poses (B, T, 17, 2) with T a multiple of the receptive field "
                       f"{field}, got shape {pose_2d.shape}")
    batch, num_windows = pose_2d.shape[0], pose_2d.shape[1] // field
    windows = reshape_keep_batch(pose_2d, (batch * num_windows, field, NUM_JOINTS, 2))
    target = target_index(widths, self.causal)
    encoders_train = train and not self.frozen_encoders

    current = reshape_keep_batch(windows[:, target], (windows.shape[0], 2 * NUM_JOINTS))
    global_features = FCBlock(self.latent_dim, self.fc_hidden, 2, self.fc_dropout,
                              name="global_encoder")(current, encoders_train)
    local = []
    for (name, _), x in zip(JOINT_GROUPS, group_inputs(windows, target)):
      encoder = TemporalEncoder(widths, self.channels, self.latent_dim, self.dropout, self.causal,
                                leaky_relu, name=f"local_encoder_{name}")
      local.append(encoder(x, encoders_train, bn_momentum)[:, 0])

    outputs = []
    for i, (name, joints) in enumerate(JOINT_GROUPS):
      features = [local[i]]
      if self.stage > 1:
        others = jnp.concatenate(local[:i] + local[i + 1:], axis=-1)
        features.append(FCBlock(self.latent_dim, self.fc_hidden, 1, self.fc_dropout,
                                name=f"fusion_{name}")(others, train))
      features.append(global_features)
      decoded = FCBlock(len(joints) * 3, self.fc_hidden, 1, self.fc_dropout,
                        name=f"decoder_{name}")(jnp.concatenate(features, axis=-1), train)
      outputs.append(reshape_keep_batch(decoded, (decoded.shape[0], len(joints), 3)))
    pose_3d = jnp.concatenate(outputs, axis=1)[:, _TO_H36M]
    return reshape_keep_batch(pose_3d, (batch, num_windows, NUM_JOINTS, 3))
