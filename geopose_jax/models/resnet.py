"""ResNet building blocks in NHWC with PyTorch's layer names and conventions.

Submodule names mirror torchvision's state-dict names (`conv1`, `bn1`, `layer1/0/conv2`,
`layer2/0/downsample/0`, ...), so a PyTorch key `layer1.0.bn1.running_mean` is the Flax path
`batch_stats/layer1/0/bn1/mean` and importing weights is a renaming plus a transpose
(see `geopose_jax.convert`).

BatchNorm follows PyTorch: eps 1e-5, momentum 0.1 (Flax momentum 0.9). One difference
remains: Flax updates the running variance with the biased batch variance, PyTorch with
the unbiased one (a factor n / (n - 1), n = batch * height * width; < 0.1% at 128x128).
Strided convolutions pad symmetrically as PyTorch does (Flax's 'SAME' would pad (2, 3)
for a 7x7 stride-2 kernel on an even input and shift every feature by half a pixel).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from geopose_jax.models import conv as conv_ops
from geopose_jax.models.batch_norm import BatchNorm

Dtype = Any

# He-normal with fan-out: the initialisation of torchvision's and the original's ResNets.
resnet_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default for nn.Linear / nn.Conv2d weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default bias initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / max(fan_in, 1) ** 0.5

  def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


# PyTorch before 1.2 (the originals ran 0.4) initialised BatchNorm weights U[0, 1), not 1;
# layers the originals did not re-initialise explicitly start that way here too.
torch04_batch_norm_scale_init = nn.initializers.uniform(1.0)


def batch_norm(train: bool, dtype: Dtype, name: str,
               scale_init: nn.initializers.Initializer = nn.initializers.ones) -> BatchNorm:
  """BatchNorm with PyTorch's defaults; `train` uses and updates batch statistics."""
  return BatchNorm(use_running_average=not train, dtype=dtype, scale_init=scale_init, name=name)


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, use_bias: bool = False,
         dtype: Dtype = jnp.float32, name: str | None = None,
         kernel_init: nn.initializers.Initializer = resnet_conv_init) -> conv_ops.Conv:
  """A PyTorch-style Conv2d in NHWC: square kernel, symmetric zero padding."""
  return conv_ops.Conv(features, (kernel, kernel), strides=(stride, stride),
                       padding=((padding, padding), (padding, padding)), use_bias=use_bias,
                       dtype=dtype, kernel_init=kernel_init, name=name)


def _max_pool_by_slices(x: jax.Array) -> jax.Array:
  """MaxPool2d(3, 2, 1) as the maximum of 9 strided slices of the -inf padded input."""
  b, h, w, c = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  out_h, out_w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
  out = None
  for i in range(3):
    for j in range(3):
      window = jax.lax.slice(padded, (0, i, j, 0),
                             (b, i + 2 * (out_h - 1) + 1, j + 2 * (out_w - 1) + 1, c),
                             (1, 2, 2, 1))
      out = window if out is None else jnp.maximum(out, window)
  return out


@jax.custom_vjp
def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """PyTorch MaxPool2d(3, stride=2, padding=1) (padding never wins the max), NHWC.

  The gradient is taken through the 9-slice form: XLA's select-and-scatter (the gradient
  of reduce_window) is ~4x slower on CPU. Ties split the gradient (PyTorch gives it to
  the first maximum); ties between distinct positive activations do not occur in practice.
  """
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def _max_pool_fwd(x: jax.Array):
  return max_pool_3x3_s2(x), x


def _max_pool_bwd(x: jax.Array, grad: jax.Array):
  return (jax.vjp(_max_pool_by_slices, x)[1](grad)[0],)


max_pool_3x3_s2.defvjp(_max_pool_fwd, _max_pool_bwd)


class Downsample(nn.Module):
  """The projection shortcut `downsample.0` (1x1 conv) and `downsample.1` (BatchNorm)."""
  features: int
  stride: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = conv(self.features, 1, self.stride, dtype=self.dtype, name="0")(x)
    return batch_norm(train, self.dtype, "1")(x)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""
  planes: int
  stride: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """(B, H, W, C) -> (B, H / stride, W / stride, planes)."""
    y = conv(self.planes, 3, self.stride, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.planes, 3, 1, 1, dtype=self.dtype, name="conv2")(y)
    y = batch_norm(train, self.dtype, "bn2")(y)
    if self.downsample:
      x = Downsample(self.planes, self.stride, self.dtype, name="downsample")(x, train)
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 x4 with a residual connection (ResNet-50 and up)."""
  planes: int
  stride: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """(B, H, W, C) -> (B, H / stride, W / stride, 4 * planes)."""
    y = conv(self.planes, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.planes, 3, self.stride, 1, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(batch_norm(train, self.dtype, "bn2")(y))
    y = conv(self.planes * self.expansion, 1, dtype=self.dtype, name="conv3")(y)
    y = batch_norm(train, self.dtype, "bn3")(y)
    if self.downsample:
      x = Downsample(self.planes * self.expansion, self.stride, self.dtype,
                     name="downsample")(x, train)
    return nn.relu(y + x)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def block_class(block: str) -> type[nn.Module]:
  if block not in BLOCKS:
    raise ValueError(f"unknown ResNet block {block!r}; use one of {sorted(BLOCKS)}")
  return BLOCKS[block]


class ResLayer(nn.Module):
  """A stage of `num_blocks` blocks named '0', '1', ...; the first one may stride."""
  block: str
  planes: int
  num_blocks: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    cls = block_class(self.block)
    for i in range(self.num_blocks):
      stride = self.stride if i == 0 else 1
      # As PyTorch's _make_layer: project the shortcut when the shape changes.
      downsample = i == 0 and (stride != 1 or x.shape[-1] != self.planes * cls.expansion)
      x = cls(self.planes, stride, downsample, self.dtype, name=str(i))(x, train)
    return x


class ResNet18Features(nn.Module):
  """The perceptual-loss network: ImageNet ResNet-18 features at three depths.

  Returns [relu(bn1(conv1(x))), layer1, layer2] as the original's loss network does
  (maxpool between the first two unless `do_maxpooling` is False); at 128x128 input:
  (B, 64, 64, 64), (B, 32, 32, 64), (B, 16, 16, 128). Parameter paths: conv1, bn1,
  layer1/{0,1}/..., layer2/{0,1}/... as in torchvision's resnet18 state dict.
  """
  width: int = 64
  depth: tuple[int, int] = (2, 2)
  block: str = "basic"
  do_maxpooling: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    x0 = nn.relu(batch_norm(train, self.dtype, "bn1")(
        conv(self.width, 7, 2, 3, dtype=self.dtype, name="conv1")(x)))
    x = max_pool_3x3_s2(x0) if self.do_maxpooling else x0
    x1 = ResLayer(self.block, self.width, self.depth[0], 1, self.dtype, name="layer1")(x, train)
    x2 = ResLayer(self.block, 2 * self.width, self.depth[1], 2, self.dtype,
                  name="layer2")(x1, train)
    return [x0, x1, x2]
