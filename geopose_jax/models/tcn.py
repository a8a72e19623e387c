"""Strided temporal convolutions over 2D pose sequences (VideoPose3D, Pavllo et al. CVPR 2019).

The temporal model reads a window of `receptive_field(filter_widths)` frames and predicts the
centre frame (or the last frame when causal). Every convolution has kernel = stride and VALID
padding, the "optimised single-frame" form of the original: such a convolution is a reshape of
(B, T, C) into (B, T / k, k * C) followed by a dense layer, which is how it is computed here.
The weights are those of the original's dilated `TemporalModel` as well.

The same module serves training and evaluation; an input of n * receptive_field frames is read
as n consecutive non-overlapping windows and gives n output frames.

Layout is channels-last: a window is (B, T, C). Inside a frame, channel c of joint j sits at
2 j + c, the order of the original's `x.view(B, T, -1)`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.models.batch_norm import BatchNorm
from geopose_jax.models.dropout import Dropout
from geopose_jax.models.sharding import reshape_keep_batch

# PyTorch's default initialisers: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> Callable[..., jax.Array]:
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def check_filter_widths(filter_widths: Sequence[int]) -> tuple[int, ...]:
  widths = tuple(int(w) for w in filter_widths)
  if not widths or any(w < 1 or w % 2 == 0 for w in widths):
    raise ValueError(f"filter widths must be odd positive integers, got {list(filter_widths)} "
                     "(e.g. --config.model.filter_widths=3,3,3,3,3)")
  return widths


def receptive_field(filter_widths: Sequence[int]) -> int:
  """Frames one output frame sees: 1 + 2 * sum of the per-layer half widths = prod(widths)."""
  widths = check_filter_widths(filter_widths)
  pad, dilation = widths[0] // 2, widths[0]
  for w in widths[1:]:
    pad += (w - 1) * dilation // 2
    dilation *= w
  return 1 + 2 * pad


def target_index(filter_widths: Sequence[int], causal: bool) -> int:
  """Index inside a window of the frame the model predicts: the centre, or the last if causal."""
  field = receptive_field(filter_widths)
  return field - 1 if causal else field // 2


class StridedConv(nn.Module):
  """Conv1D with kernel = stride = `width`, VALID padding: (B, T, C) -> (B, T / width, features).

  The kernel is stored as a Flax Conv kernel (width, C, features) and applied as one dense
  layer on the reshaped input.
  """
  features: int
  width: int
  use_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, length, channels = x.shape
    if length % self.width:
      raise ValueError(f"sequence length {length} is not a multiple of the filter width {self.width}")
    kernel = self.param("kernel", torch_kernel_init, (self.width, channels, self.features))
    steps = length // self.width
    # A 2D matmul, forward and backward: XLA's CPU backend runs the weight gradient of a
    # (B, T, K) x (K, N) dot several times slower than that of (B * T, K) x (K, N).
    rows = reshape_keep_batch(x, (batch * steps, self.width * channels))
    y = rows @ kernel.reshape(self.width * channels, self.features)
    if self.use_bias:
      y = y + self.param("bias", torch_bias_init(self.width * channels), (self.features,))
    return reshape_keep_batch(y, (batch, steps, self.features))


def pointwise(dense: nn.Module, x: jax.Array) -> jax.Array:
  """A 1x1 convolution (B, T, C) -> (B, T, N) as a 2D matmul (see StridedConv)."""
  batch, steps, channels = x.shape
  y = dense(reshape_keep_batch(x, (batch * steps, channels)))
  return reshape_keep_batch(y, (batch, steps, y.shape[-1]))


def leaky_relu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, 0.2)


class TemporalEncoder(nn.Module):
  """The temporal convolution stack of VideoPose3D (and of each RIE local encoder).

  expand: StridedConv(width w0) + BN + act + dropout; then for each further width w_i a
  residual block [StridedConv(w_i) + BN + act + dropout, 1x1 conv + BN + act + dropout] whose
  skip path is the centre (causal: last) frame of each stride group; finally a 1x1 conv with
  bias to `out_features`.

  Input (B, T, C_in) with T a multiple of prod(filter_widths); output (B, T / prod, out_features).
  """
  filter_widths: Sequence[int]
  channels: int
  out_features: int
  dropout: float
  causal: bool = False
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, bn_momentum: float | jax.Array = 0.1) -> jax.Array:
    widths = check_filter_widths(self.filter_widths)
    field = math.prod(widths)
    if x.ndim != 3 or x.shape[1] % field:
      raise ValueError(f"expected (B, T, C) with T a multiple of the receptive field {field}, "
                       f"got shape {x.shape}")
    drop = Dropout(self.dropout, deterministic=not train)

    def act_bn(y, name):
      return drop(self.activation(BatchNorm(name=name)(y, not train, bn_momentum)))

    x = act_bn(StridedConv(self.channels, widths[0], name="expand_conv")(x), "expand_bn")
    for i, width in enumerate(widths[1:]):
      skip_offset = width - 1 if self.causal else width // 2
      residual = x[:, skip_offset::width]
      y = act_bn(StridedConv(self.channels, width, name=f"block_{i}_conv")(x), f"block_{i}_conv_bn")
      y = pointwise(nn.Dense(self.channels, use_bias=False, kernel_init=torch_kernel_init,
                             name=f"block_{i}_pointwise"), y)
      x = residual + act_bn(y, f"block_{i}_pointwise_bn")
    return pointwise(nn.Dense(self.out_features, kernel_init=torch_kernel_init,
                              bias_init=torch_bias_init(self.channels), name="shrink"), x)


class TemporalConvNet(nn.Module):
  """VideoPose3D's temporal model: (B, T, J, 2) normalised 2D -> (B, T / field, J_out, 3).

  ReLU, dropout 0.25, 1024 channels by default. No relative encodings: the input window is fed
  as it is. The prediction is the root-relative camera-frame 3D pose of each window's centre
  (causal: last) frame.
  """
  filter_widths: Sequence[int] = (3, 3, 3, 3, 3)
  channels: int = 1024
  dropout: float = 0.25
  causal: bool = False
  num_joints_out: int = 17

  @nn.compact
  def __call__(self, pose_2d: jax.Array, train: bool = False,
               bn_momentum: float | jax.Array = 0.1) -> jax.Array:
    if pose_2d.ndim != 4:
      raise ValueError(f"expected 2D poses (B, T, J, 2), got shape {pose_2d.shape}")
    batch, length = pose_2d.shape[:2]
    x = reshape_keep_batch(pose_2d, (batch, length, pose_2d.shape[2] * pose_2d.shape[3]))
    y = TemporalEncoder(self.filter_widths, self.channels, self.num_joints_out * 3, self.dropout,
                        self.causal, nn.relu, name="encoder")(x, train, bn_momentum)
    return reshape_keep_batch(y, (batch, y.shape[1], self.num_joints_out, 3))


def count_parameters(params) -> int:
  return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))
