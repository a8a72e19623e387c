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

HumanEva-I's 15 joints (`num_joints=15`, skeleton.HUMANEVA_JOINT_NAMES) use
`HUMANEVA_JOINT_GROUPS`: the same five parts in the same order. The original's public code
(paTRICK-swk/Pose3D-RIE, common/model.py) hard-codes the Human3.6M-17 slices only, so the
15-joint grouping follows its rule: the torso holds the root and the joints on the spine
and head (pelvis, thorax, head), each limb its three joints from shoulder or hip outward.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.models.batch_norm import BatchNorm
from geopose_jax.models.dropout import Dropout
from geopose_jax.models.sharding import reshape_keep_batch
from geopose_jax.models.tcn import (TemporalEncoder, check_filter_widths, leaky_relu,
                                    target_index, torch_bias_init, torch_kernel_init)

# (name, Human3.6M joints) in the original's order: Torso, LArm, RArm, LLeg, RLeg.
JOINT_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("torso", (0, 7, 8, 9, 10)),
    ("right_arm", (14, 15, 16)),
    ("left_arm", (11, 12, 13)),
    ("right_leg", (1, 2, 3)),
    ("left_leg", (4, 5, 6)),
)
# The same parts for HumanEva-15: pelvis, thorax, head; right / left arm; right / left leg.
HUMANEVA_JOINT_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("torso", (0, 1, 14)),
    ("right_arm", (5, 6, 7)),
    ("left_arm", (2, 3, 4)),
    ("right_leg", (11, 12, 13)),
    ("left_leg", (8, 9, 10)),
)
JOINT_GROUPS_BY_COUNT = {17: JOINT_GROUPS, 15: HUMANEVA_JOINT_GROUPS}
GROUP_NAMES = tuple(name for name, _ in JOINT_GROUPS)
# Parameter subtrees trained in stage 1 and frozen in stage 2.
ENCODER_MODULES = tuple(f"local_encoder_{name}" for name in GROUP_NAMES) + ("global_encoder",)
NUM_JOINTS = 17


def joint_groups(num_joints: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
  """The five body parts of a 17-joint (Human3.6M) or 15-joint (HumanEva) skeleton."""
  if num_joints not in JOINT_GROUPS_BY_COUNT:
    raise ValueError(f"RIE has body-part groups for {sorted(JOINT_GROUPS_BY_COUNT)} joints, "
                     f"not {num_joints}")
  return JOINT_GROUPS_BY_COUNT[num_joints]


def _from_group_order(groups) -> np.ndarray:
  """Indices that put the concatenated group outputs back in skeleton order."""
  return np.argsort(np.concatenate([joints for _, joints in groups]))


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
    drop = Dropout(self.dropout, deterministic=not train)

    def layer(y, name):
      y = nn.Dense(self.hidden, kernel_init=torch_kernel_init,
                   bias_init=torch_bias_init(y.shape[-1]), name=name)(y)
      return drop(leaky_relu(BatchNorm(name=f"{name}_bn")(y, not train)))

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


def group_inputs(windows: jax.Array, target: int, groups=JOINT_GROUPS) -> list[jax.Array]:
  """(N, T, J, 2) -> per group (N, T, 6 n): [raw, positional, temporal] of its n joints."""
  positional, temporal = relative_encodings(windows, target)
  n, t = windows.shape[:2]
  out = []
  for _, joints in groups:
    idx = np.asarray(joints)
    parts = [reshape_keep_batch(a[:, :, idx], (n, t, 2 * len(joints)))
             for a in (windows, positional, temporal)]
    out.append(jnp.concatenate(parts, axis=-1))
  return out


class RIE(nn.Module):
  """(B, T, J, 2) normalised 2D -> (B, T / field, J, 3) root-relative camera-frame 3D (m).

  An input of n * field frames is read as n non-overlapping windows, each predicting its own
  target frame; training and evaluation feed exactly one window (T = field).

  Attributes:
    stage: 1 (encoders + decoders) or 2/3 (with the Feature Fusion Module).
    latent_dim: L, the size of local, global and fused features (256 for GT 2D, 512 CPN).
    channels: width of the temporal convolutions (256).
    frozen_encoders: run the local and global encoders in inference mode (running BatchNorm
      statistics, no dropout) even when training; stage 2's `freeze_batch_stats` option.
    num_joints: J, 17 (Human3.6M) or 15 (HumanEva-I); selects the body-part groups.
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
  num_joints: int = NUM_JOINTS

  @nn.compact
  def __call__(self, pose_2d: jax.Array, train: bool = False,
               bn_momentum: float | jax.Array = 0.1) -> jax.Array:
    if self.stage not in (1, 2, 3):
      raise ValueError(f"RIE stage must be 1, 2 or 3, got {self.stage}")
    widths = check_filter_widths(self.filter_widths)
    field = math.prod(widths)
    groups = joint_groups(self.num_joints)
    num_joints = self.num_joints
    if pose_2d.ndim != 4 or pose_2d.shape[2:] != (num_joints, 2) or pose_2d.shape[1] % field:
      raise ValueError(f"expected 2D poses (B, T, {num_joints}, 2) with T a multiple of the "
                       f"receptive field {field}, got shape {pose_2d.shape}")
    batch, num_windows = pose_2d.shape[0], pose_2d.shape[1] // field
    windows = reshape_keep_batch(pose_2d, (batch * num_windows, field, num_joints, 2))
    target = target_index(widths, self.causal)
    encoders_train = train and not self.frozen_encoders

    current = reshape_keep_batch(windows[:, target], (windows.shape[0], 2 * num_joints))
    global_features = FCBlock(self.latent_dim, self.fc_hidden, 2, self.fc_dropout,
                              name="global_encoder")(current, encoders_train)
    local = []
    for (name, _), x in zip(groups, group_inputs(windows, target, groups)):
      encoder = TemporalEncoder(widths, self.channels, self.latent_dim, self.dropout, self.causal,
                                leaky_relu, name=f"local_encoder_{name}")
      local.append(encoder(x, encoders_train, bn_momentum)[:, 0])

    outputs = []
    for i, (name, joints) in enumerate(groups):
      features = [local[i]]
      if self.stage > 1:
        others = jnp.concatenate(local[:i] + local[i + 1:], axis=-1)
        features.append(FCBlock(self.latent_dim, self.fc_hidden, 1, self.fc_dropout,
                                name=f"fusion_{name}")(others, train))
      features.append(global_features)
      decoded = FCBlock(len(joints) * 3, self.fc_hidden, 1, self.fc_dropout,
                        name=f"decoder_{name}")(jnp.concatenate(features, axis=-1), train)
      outputs.append(reshape_keep_batch(decoded, (decoded.shape[0], len(joints), 3)))
    pose_3d = jnp.concatenate(outputs, axis=1)[:, _from_group_order(groups)]
    return reshape_keep_batch(pose_3d, (batch, num_windows, num_joints, 3))
