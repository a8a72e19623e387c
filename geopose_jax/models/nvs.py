"""The novel-view-synthesis network of Rhodin et al. (ECCV 2018), layer for layer.

An image is encoded into an appearance vector (B, 128) and a geometry latent of 200 3D
points (B, 200, 3); the points are rotated into another camera (`rotate_latent`) and
decoded, over that camera's background, into the image the other camera sees.

Encoder (`encoder/...`, a ResNet-50 cut after layer3, then a regression stream):
  conv1 7x7 s2 + bn1 + ReLU + maxpool -> layer1 -> layer2 -> layer3 -> layer4_reg
  (3 bottlenecks, stride 1, random init) -> l4_reg_toVec [0: conv3x3 VALID + bias,
  1: BN, ReLU, 3: conv5x5 s2 VALID, 4: BN, Sigmoid] -> flatten (NCHW order) -> fc
  -> [appearance (128) | geometry (600 = 200 x 3)].
Decoder (top level, the original's names):
  from_latent: Dense 600 -> 128*16*16, Dropout, ReLU, viewed NCHW (128, 16, 16);
  concat [tiled appearance, geometry map] -> 256 channels at 16x16;
  upconv_1_stage0, upconv_2_stage0: bilinear x2 (align_corners) -> up/1 conv3x3 + up/2 BN
    + ReLU -> conv/conv1/0 conv3x3 + ReLU -> conv/conv2/0 conv3x3 + ReLU (256 -> 128 -> 64);
  conv_1_stage_bg0 on the target background: conv1/{0 conv, 1 BN}, ReLU, conv2/{0, 1}, ReLU;
  upconv_3_stage0: as above, with the background features concatenated (first) before
    conv/conv1 (64 -> 32 at 128x128);
  final_stage0: conv1x1 32 -> 3, no activation (normalised image space).

Parameter tree (`params`; BatchNorm `scale`/`bias` in params, `mean`/`var` in
`batch_stats` at the same paths), at the paper's configuration:
  encoder/conv1/kernel (7,7,3,64); encoder/bn1/{scale,bias}
  encoder/layer{1,2,3}/{i}/{conv1,conv2,conv3}/kernel, .../{bn1,bn2,bn3}/{scale,bias},
    encoder/layer{k}/0/downsample/{0/kernel, 1/{scale,bias}}   (blocks 3, 4, 6)
  encoder/layer4_reg/{0,1,2}/...                              (same block layout)
  encoder/l4_reg_toVec/{0/{kernel,bias}, 1/{scale,bias}, 3/kernel, 4/{scale,bias}}
  encoder/fc/{kernel (128, 728), bias}
  from_latent/{kernel (600, 32768), bias}
  conv_1_stage_bg0/{conv1,conv2}/{0/{kernel,bias}, 1/{scale,bias}}
  upconv_{1,2,3}_stage0/up/{1/{kernel,bias}, 2/{scale,bias}}
  upconv_{1,2,3}_stage0/conv/{conv1,conv2}/0/{kernel,bias}
  final_stage0/{kernel (1,1,32,3), bias}
A PyTorch key `encoder.layer1.0.bn1.running_var` is `batch_stats/encoder/layer1/0/bn1/var`.
Stage 1 of the original freezes `encoder/{conv1,bn1,layer1,layer2}` (configs/nvs.py STAGE1_FROZEN).

Images are NHWC float32, normalised with ImageNet statistics (`normalize_image`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.models import conv as conv_ops
from geopose_jax.models import resnet
from geopose_jax.models.dropout import Dropout
from geopose_jax.models.resize import upsample2x_align_corners

Dtype = Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The paper's network (the defaults of NVSModel).
PAPER_CONFIG: dict[str, Any] = dict(
    encoder_depth=(3, 4, 6), width=64, block="bottleneck", layer4_reg_blocks=3,
    to_vec_channels=(512, 128), bottleneck_num_latent_points=200, appearance_dim=128,
    decoder_channels=(32, 64, 128, 256), dropout=0.3, image_size=128)


def normalize_image(images: jax.Array | np.ndarray) -> jax.Array:
  """uint8 (..., H, W, 3) in [0, 255] -> float32 (x / 255 - mean) / std (ImageNet)."""
  x = jnp.asarray(images, jnp.float32) / 255.0
  return (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)


def denormalize_image(images: jax.Array | np.ndarray) -> jax.Array:
  """Normalised (..., H, W, 3) -> float32 in [0, 1] units (not clipped)."""
  x = jnp.asarray(images, jnp.float32)
  return x * jnp.asarray(IMAGENET_STD, jnp.float32) + jnp.asarray(IMAGENET_MEAN, jnp.float32)


def to_uint8_image(images: jax.Array | np.ndarray) -> np.ndarray:
  """Normalised (..., H, W, 3) -> uint8 in [0, 255] (clipped, rounded), as numpy."""
  x = np.asarray(denormalize_image(images))
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def rotate_latent(geometry: jax.Array, rotation: jax.Array) -> jax.Array:
  """Rotates row-vector latent points: (B, N, 3), R (B, 3, 3) -> geometry @ R^T (B, N, 3).

  With R = R_j R_i^T (world->camera rotations of the target j and source i), a latent
  expressed in camera i is expressed in camera j. No translation.
  """
  return jnp.einsum("bnk,bjk->bnj", geometry, rotation)


def _decoder_conv(features: int, kernel: int, fan_in: int, dtype: Dtype, name: str
                  ) -> conv_ops.Conv:
  """A PyTorch-default-initialised Conv2d with bias and 'same' padding for odd kernels."""
  pad = kernel // 2
  return conv_ops.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), dtype=dtype,
                       kernel_init=resnet.torch_default_kernel_init,
                       bias_init=resnet.torch_default_bias_init(fan_in * kernel * kernel),
                       name=name)


def _dense(features: int, fan_in: int, dtype: Dtype) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=resnet.torch_default_kernel_init,
                  bias_init=resnet.torch_default_bias_init(fan_in))


class ConvBlock(nn.Module):
  """One `nn.Sequential(Conv2d 3x3, [BatchNorm2d], ReLU)`: children '0' (conv), '1' (BN)."""
  features: int
  batchnorm: bool
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = _decoder_conv(self.features, 3, x.shape[-1], self.dtype, "0")(x)
    if self.batchnorm:
      x = resnet.batch_norm(train, self.dtype, "1", resnet.torch04_batch_norm_scale_init)(x)
    return nn.relu(x)


class ConvPair(nn.Module):
  """The original's `unetConv2`: `conv1` and `conv2`, each a ConvBlock."""
  features: int
  batchnorm: bool
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = ConvBlock(self.features, self.batchnorm, self.dtype, name="conv1")(x, train)
    return ConvBlock(self.features, self.batchnorm, self.dtype, name="conv2")(x, train)


class UpsampleConv(nn.Module):
  """`up` = Sequential(Upsample x2 align_corners, '1': conv3x3, '2': BN, ReLU)."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = upsample2x_align_corners(x)
    x = _decoder_conv(self.features, 3, x.shape[-1], self.dtype, "1")(x)
    return nn.relu(resnet.batch_norm(train, self.dtype, "2",
                                     resnet.torch04_batch_norm_scale_init)(x))


class UpBlock(nn.Module):
  """`unetUpNoSKip` / `unetUp` with bilinear upsampling: `up`, then `conv` (no BN).

  With `skip` (the background features), the skip is concatenated before the upsampled
  features, as the original's `torch.cat([inputs1, outputs2], 1)`.
  """
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, skip: jax.Array | None = None) -> jax.Array:
    x = UpsampleConv(self.features, self.dtype, name="up")(x, train)
    if skip is not None:
      x = jnp.concatenate([skip.astype(x.dtype), x], axis=-1)
    return ConvPair(self.features, False, self.dtype, name="conv")(x, train)


class ToVector(nn.Module):
  """`l4_reg_toVec`: '0' conv3x3 (+bias) '1' BN ReLU '3' conv5x5 s2 '4' BN Sigmoid."""
  channels: Sequence[int] = (512, 128)
  padded: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    pad3, pad5 = (1, 2) if self.padded else (0, 0)
    x = conv_ops.Conv(self.channels[0], (3, 3), padding=((pad3, pad3), (pad3, pad3)),
                      dtype=self.dtype, kernel_init=resnet.resnet_conv_init,
                      bias_init=resnet.torch_default_bias_init(9 * x.shape[-1]), name="0")(x)
    x = nn.relu(resnet.batch_norm(train, self.dtype, "1")(x))
    x = resnet.conv(self.channels[1], 5, 2, pad5, dtype=self.dtype, name="3")(x)
    return nn.sigmoid(resnet.batch_norm(train, self.dtype, "4")(x))


class NVSEncoder(nn.Module):
  """ResNet to layer3 + layer4_reg + l4_reg_toVec + fc: (B, H, W, 3) -> (B, output_dim)."""
  depth: Sequence[int] = (3, 4, 6)
  width: int = 64
  block: str = "bottleneck"
  layer4_reg_blocks: int = 3
  to_vec_channels: Sequence[int] = (512, 128)
  to_vec_padded: bool = False
  output_dim: int = 728
  frozen_stem_batch_stats: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    # The original leaves the frozen layers' BatchNorm in train mode; optionally not.
    stem_train = train and not self.frozen_stem_batch_stats
    w, blk, dt = self.width, self.block, self.dtype
    x = resnet.conv(w, 7, 2, 3, dtype=dt, name="conv1")(x.astype(dt))
    x = nn.relu(resnet.batch_norm(stem_train, dt, "bn1")(x))
    x = resnet.max_pool_3x3_s2(x)
    x = resnet.ResLayer(blk, w, self.depth[0], 1, dt, name="layer1")(x, stem_train)
    x = resnet.ResLayer(blk, 2 * w, self.depth[1], 2, dt, name="layer2")(x, stem_train)
    x = resnet.ResLayer(blk, 4 * w, self.depth[2], 2, dt, name="layer3")(x, train)
    x = resnet.ResLayer(blk, 4 * w, self.layer4_reg_blocks, 1, dt, name="layer4_reg")(x, train)
    x = ToVector(tuple(self.to_vec_channels), self.to_vec_padded, dt, name="l4_reg_toVec")(x, train)
    # PyTorch flattens (C, H, W); keep that order so imported `fc` weights line up.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    return nn.Dense(self.output_dim, dtype=dt, kernel_init=resnet.torch_default_kernel_init,
                    bias_init=resnet.torch_default_bias_init(x.shape[-1]), name="fc")(x)


class NVSModel(nn.Module):
  """Rhodin et al.'s encoder/decoder. Defaults are the paper's network (PAPER_CONFIG).

  Attributes:
    encoder_depth: bottleneck blocks in layer1..layer3 ((3, 4, 6) = ResNet-50).
    width: channels of conv1 / planes of layer1 (layer k has width * 2^(k-1) planes).
    block: 'bottleneck' or 'basic'.
    layer4_reg_blocks: blocks of the stride-1 regression stage after layer3.
    to_vec_channels: channels of the two l4_reg_toVec convolutions.
    to_vec_padded: pad those convolutions (1 and 2 pixels) so that images under 112 px
      work; the original does not pad.
    bottleneck_num_latent_points: N, the geometry latent has (N, 3).
    appearance_dim: size of the appearance vector.
    decoder_channels: channels per decoder resolution, finest first; the bottleneck map
      (image_size / 2^(len-1)) has decoder_channels[-1] channels, appearance_dim of them
      the tiled appearance vector.
    dropout: dropout rate after from_latent.
    image_size: input/output height = width.
    frozen_stem_batch_stats: use the running averages in conv1..layer2's BatchNorms even
      when training (the original, False, keeps them in train mode though frozen).
    dtype: computation dtype (parameters stay float32); e.g. jnp.bfloat16 on GPU/TPU.
  """
  encoder_depth: Sequence[int] = (3, 4, 6)
  width: int = 64
  block: str = "bottleneck"
  layer4_reg_blocks: int = 3
  to_vec_channels: Sequence[int] = (512, 128)
  to_vec_padded: bool = False
  bottleneck_num_latent_points: int = 200
  appearance_dim: int = 128
  decoder_channels: Sequence[int] = (32, 64, 128, 256)
  dropout: float = 0.3
  image_size: int = 128
  frozen_stem_batch_stats: bool = False
  dtype: Dtype = jnp.float32

  @property
  def bottleneck_size(self) -> int:
    return self.image_size // 2 ** (len(self.decoder_channels) - 1)

  @property
  def geometry_channels(self) -> int:
    return self.decoder_channels[-1] - self.appearance_dim

  def setup(self):
    self._check_config()
    latent_dim = 3 * self.bottleneck_num_latent_points
    self.encoder = NVSEncoder(
        tuple(self.encoder_depth), self.width, self.block, self.layer4_reg_blocks,
        tuple(self.to_vec_channels), self.to_vec_padded, self.appearance_dim + latent_dim,
        self.frozen_stem_batch_stats, self.dtype)
    self.from_latent = _dense(self.geometry_channels * self.bottleneck_size ** 2, latent_dim,
                              self.dtype)
    self.latent_dropout = Dropout(self.dropout)
    channels = self.decoder_channels
    self.conv_1_stage_bg0 = ConvPair(channels[0], True, self.dtype)
    for i in range(1, len(channels)):
      setattr(self, f"upconv_{i}_stage0", UpBlock(channels[-1 - i], self.dtype))
    self.final_stage0 = _decoder_conv(3, 1, channels[0], self.dtype, None)

  def _check_config(self):
    if len(self.encoder_depth) != 3:
      raise ValueError(f"encoder_depth must give 3 stage depths (layer1..3), got "
                       f"{self.encoder_depth}")
    if self.geometry_channels <= 0:
      raise ValueError(f"decoder_channels[-1]={self.decoder_channels[-1]} must exceed "
                       f"appearance_dim={self.appearance_dim}")
    if len(self.decoder_channels) < 2:
      raise ValueError(f"decoder_channels needs at least 2 entries, got {self.decoder_channels}")
    if self.image_size % 2 ** (len(self.decoder_channels) - 1):
      raise ValueError(f"image_size={self.image_size} must be divisible by "
                       f"{2 ** (len(self.decoder_channels) - 1)} for {len(self.decoder_channels)} "
                       "decoder resolutions")
    layer3_size = -(-self.image_size // 16)
    if not self.to_vec_padded and layer3_size < 7:
      raise ValueError(f"image_size={self.image_size} is too small for the unpadded "
                       "l4_reg_toVec convolutions (needs >= 97 px); set to_vec_padded=True")

  def _check_images(self, images: jax.Array, what: str):
    expected = (self.image_size, self.image_size, 3)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
      raise ValueError(f"{what} must have shape (B, {self.image_size}, {self.image_size}, 3) "
                       f"(model image_size={self.image_size}), got {tuple(images.shape)}")

  def encode(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Normalised images (B, H, W, 3) -> appearance (B, A), geometry (B, N, 3), float32."""
    self._check_images(images, "images")
    out = self.encoder(images, train).astype(jnp.float32)
    appearance = out[:, :self.appearance_dim]
    geometry = out[:, self.appearance_dim:].reshape(out.shape[0], -1, 3)
    return appearance, geometry

  def decode(self, appearance: jax.Array, geometry: jax.Array, background: jax.Array,
             train: bool = False) -> jax.Array:
    """(B, A), rotated (B, N, 3), normalised target background (B, H, W, 3) -> (B, H, W, 3).

    Dropout (train only) draws from the 'dropout' rng stream.
    """
    self._check_images(background, "background")
    batch = geometry.shape[0]
    size = self.bottleneck_size
    x = self.from_latent(geometry.reshape(batch, -1).astype(self.dtype))
    x = nn.relu(self.latent_dropout(x, deterministic=not train))
    # The original views the 32768 outputs as (C, H, W).
    x = x.reshape(batch, self.geometry_channels, size, size).transpose(0, 2, 3, 1)
    tiled = jnp.broadcast_to(appearance.astype(x.dtype)[:, None, None, :],
                             (batch, size, size, self.appearance_dim))
    x = jnp.concatenate([tiled, x], axis=-1)
    num_up = len(self.decoder_channels) - 1
    for i in range(1, num_up):
      x = getattr(self, f"upconv_{i}_stage0")(x, train)
    background_features = self.conv_1_stage_bg0(background.astype(self.dtype), train)
    x = getattr(self, f"upconv_{num_up}_stage0")(x, train, skip=background_features)
    return self.final_stage0(x).astype(jnp.float32)

  def __call__(self, images: jax.Array, background: jax.Array, rotation: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Encode, rotate (if `rotation` (B, 3, 3) is given) and decode; used for `init`."""
    appearance, geometry = self.encode(images, train)
    if rotation is not None:
      geometry = rotate_latent(geometry, rotation)
    return self.decode(appearance, geometry, background, train)


def count_params(tree: Any) -> int:
  """Number of scalars in a pytree of arrays (or of ShapeDtypeStructs)."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
