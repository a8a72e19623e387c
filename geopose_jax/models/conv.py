"""The 2D convolution of the ResNets and the NVS network (`Conv`), arranged for XLA's CPU backend.

`Conv` has flax nn.Conv's parameters (so checkpoints and importers see no difference); its
`conv_general_dilated` gives the same results and gradients as `jax.lax`'s on NHWC inputs and
HWIO kernels, and its bias gradient is a channel sum taken as a product (`add_bias`). These
cases are computed in another form, because XLA's CPU backend is slow at them:

- A 1x1 unpadded convolution is a matrix product over the channels (`pointwise_conv`; with a
  stride, of every s-th pixel). As a convolution, its kernel gradient makes XLA lay the input
  out as (C, H, W, N) first, and XLA fuses the input's producers (a ResNet's chain of residual
  additions, BatchNorm and ReLU) into that transposition and recomputes them there in an
  order that reads memory with a stride of a whole image.

- A stride-1 'same' convolution with fewer output than input channels computes its kernel
  gradient with the roles of input and output gradient exchanged
  (`kernel_gradient_exchanged`). XLA's own kernel gradient transposes the input x
  (N, H, W, C) to (C, H, W, N), the costly layout change above, and the output gradient dy
  only to (H, W, N, O), which moves whole channel vectors. Exchanged, dy takes the costly
  change (O channels), x the cheap one (C channels): fewer bytes go through the costly one,
  and x, which is often made by a gather (the decoder's upsampling), is no longer recomputed
  inside it.

- A convolution with a single output pixel (the NVS encoder's 5x5 convolution of a 6x6 map)
  is a matrix product over the flattened window (`window_product`), and a strided
  convolution of few channels a stride-1 one over pixel blocks (`space_to_depth_conv`): the
  input gradient of a strided convolution is otherwise a base-dilated convolution, which XLA's
  CPU backend computes with a generic loop, not Eigen.

With BatchNorm's sums taken as products too (batch_norm.py), these forms took the NVS training
step (batch 16, 128x128, 2 AVX-512 cores) from 3.8 s to 3.3-3.4 s; `tests/test_conv.py`
checks values and gradients of every form against `lax.conv_general_dilated`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from geopose_jax.models.batch_norm import channel_sum
from geopose_jax.models.sharding import reshape_keep_batch, replicated_like

NHWC = ("NHWC", "HWIO", "NHWC")
# Strided convolutions of at most this many input channels go through `space_to_depth_conv`.
# It multiplies more (at stride 2, 2x2 taps of 4 pixels: 16 products for a 3x3 kernel's 9, 64
# for a 7x7 kernel's 49); that paid for the RGB stems and the perceptual ResNet-18's 64-channel
# strided convolution (NVS step, batch 16: 3.5 -> 3.35 s, batch 32: 7.6 -> 6.95 s, against a
# limit of 4). Wider ones (the encoder's 128- and 256-channel ones) were not measured.
MAX_SPACE_TO_DEPTH_CHANNELS = 64


def _is_nhwc(dimension_numbers: Any) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  return tuple(dimension_numbers) == NHWC


def pointwise_conv(x: jax.Array, kernel: jax.Array, precision: Any = None) -> jax.Array:
  """1x1 convolution as a channel product: x (N, H, W, C), kernel (1, 1, C, O) -> (N, H, W, O)."""
  return lax.dot_general(x, kernel.reshape(kernel.shape[2:]), (((3,), (0,)), ((), ())),
                         precision=precision)


def window_product(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]],
                   precision: Any = None) -> jax.Array:
  """A convolution with a single output pixel: x (N, H, W, C), kernel (KH, KW, C, O) ->
  (N, 1, 1, O), the padded input's top-left KH x KW window times the kernel."""
  (top, bottom), (left, right) = padding
  x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
  kh, kw, c, o = kernel.shape
  window = reshape_keep_batch(x[:, :kh, :kw, :], (x.shape[0], kh * kw * c))
  out = lax.dot_general(window, kernel.reshape(kh * kw * c, o), (((1,), (0,)), ((), ())),
                        precision=precision)
  return reshape_keep_batch(out, (x.shape[0], 1, 1, o))


def space_to_depth_conv(x: jax.Array, kernel: jax.Array, stride: int,
                        padding: Sequence[tuple[int, int]], precision: Any = None) -> jax.Array:
  """A stride-s convolution as a stride-1 one over s x s pixel blocks stacked as channels.

  x (N, H, W, C), kernel (K, K, C, O) -> (N, H', W', O), as lax.conv_general_dilated with
  `stride` and `padding`. The blocks have s*s*C channels and the kernel ceil(K/s) taps a side
  (zero where a tap falls outside the original K): the gradient with respect to x is then a
  stride-1 convolution, not the base-dilated one XLA's CPU backend computes slowly.
  """
  n, h, w, c = x.shape
  k, o = kernel.shape[0], kernel.shape[3]
  taps = -(-k // stride)
  out_h, out_w = [(size + lo + hi - k) // stride + 1 for size, (lo, hi) in zip((h, w), padding)]
  # Pad so that the blocks cover every output's window: (out - 1 + taps) blocks a side.
  span_h, span_w = (out_h - 1 + taps) * stride, (out_w - 1 + taps) * stride
  (top, _), (left, _) = padding
  x = lax.pad(x, jnp.zeros((), x.dtype),
              ((0, 0, 0), (top, span_h - h - top, 0), (left, span_w - w - left, 0), (0, 0, 0)))
  blocks = reshape_keep_batch(x, (n, span_h // stride, stride, span_w // stride, stride, c))
  blocks = reshape_keep_batch(blocks.transpose(0, 1, 3, 2, 4, 5), (
      n, span_h // stride, span_w // stride, stride * stride * c))
  kernel = jnp.pad(kernel, ((0, taps * stride - k), (0, taps * stride - k), (0, 0), (0, 0)))
  kernel = kernel.reshape(taps, stride, taps, stride, c, o).transpose(0, 2, 1, 3, 4, 5)
  kernel = kernel.reshape(taps, taps, stride * stride * c, o)
  return lax.conv_general_dilated(blocks, kernel, (1, 1), "VALID", dimension_numbers=NHWC,
                                  precision=precision)


def _conv(x, kernel, padding, precision):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=NHWC,
                                  precision=precision)


def kernel_gradient_exchanged(x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int],
                              padding: Sequence[tuple[int, int]], precision: Any = None
                              ) -> jax.Array:
  """d loss / d kernel of a stride-1 NHWC convolution, with dy as the convolved image.

  Args:
    x: (N, H, W, C) input; dy: (N, H', W', O) gradient of the output;
    kernel_shape: (KH, KW, C, O); padding: ((lo, hi), (lo, hi)) of the forward convolution.

  Returns:
    (KH, KW, C, O). Element [i, j, c, o] = sum_{n,h,w} x[n, h+i-lo, w+j-lo, c] dy[n, h, w, o]
    (zero outside x), computed as a convolution of dy laid out (O, H', W', N) with x laid out
    (H, W, N, C); the result comes out flipped in space.
  """
  # Padding dy by K - 1 - lo before and K - 1 - hi after puts kernel tap i at output K - 1 - i.
  pads = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel_shape[:2], padding)]
  dy_t = jnp.transpose(dy, (3, 1, 2, 0))      # (O, H', W', N): "batch" O, "features" N
  x_t = jnp.transpose(x, (1, 2, 0, 3))        # (H, W, N, C): kernel with in N, out C
  flipped = lax.conv_general_dilated(dy_t, x_t, (1, 1), pads, dimension_numbers=NHWC,
                                     precision=precision, out_sharding=replicated_like(x))
  return jnp.transpose(flipped[:, ::-1, ::-1, :], (1, 2, 3, 0))


def _make_exchanged_conv(padding: tuple[tuple[int, int], ...], precision: Any):
  @jax.custom_vjp
  def conv(x, kernel):
    return _conv(x, kernel, padding, precision)

  def forward(x, kernel):
    return conv(x, kernel), (x, kernel)

  def backward(residuals, dy):
    x, kernel = residuals
    dx = jax.vjp(lambda x_: _conv(x_, kernel, padding, precision), x)[1](dy)[0]
    dkernel = kernel_gradient_exchanged(x, dy, kernel.shape, padding, precision)
    return dx, dkernel.astype(kernel.dtype)

  conv.defvjp(forward, backward)
  return conv


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """`lax.conv_general_dilated`, in the CPU-friendly forms of the module docstring where they
  apply (NHWC, no dilation or groups, explicit padding)."""
  plain = (_is_nhwc(dimension_numbers) and lhs.ndim == 4 and feature_group_count == 1
           and batch_group_count == 1 and preferred_element_type is None
           and not isinstance(padding, str)
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1))))
  if plain:
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    strides = tuple(int(s) for s in window_strides)
    out_size = [(n + lo + hi - k) // s + 1
                for n, k, s, (lo, hi) in zip(lhs.shape[1:3], rhs.shape[:2], strides, padding)]
    same = all(k % 2 == 1 and lo == hi == k // 2 for k, (lo, hi) in zip(rhs.shape[:2], padding))
    if rhs.shape[:2] == (1, 1) and padding == ((0, 0), (0, 0)):
      return pointwise_conv(lhs[:, ::strides[0], ::strides[1]], rhs, precision)
    if out_size == [1, 1]:
      return window_product(lhs, rhs, padding, precision)
    if (strides[0] == strides[1] > 1 and rhs.shape[0] == rhs.shape[1]
        and rhs.shape[2] <= MAX_SPACE_TO_DEPTH_CHANNELS):
      return space_to_depth_conv(lhs, rhs, strides[0], padding, precision)
    if strides == (1, 1) and same and rhs.shape[3] < rhs.shape[2]:
      return _make_exchanged_conv(padding, precision)(lhs, rhs)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


@jax.custom_vjp
def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y (..., O) + bias (O,); the bias gradient is a channel sum taken as a product with ones
  (XLA's CPU backend is several times slower at the reduction it would otherwise use)."""
  return y + bias.astype(y.dtype)


def _add_bias_forward(y, bias):
  return add_bias(y, bias), bias


def _add_bias_backward(bias, dy):
  return dy, channel_sum(dy).astype(bias.dtype)


add_bias.defvjp(_add_bias_forward, _add_bias_backward)


class Conv(nn.Module):
  """A 2D convolution of NHWC images with flax nn.Conv's parameters (`kernel` (KH, KW, C, O),
  `bias` (O,), float32), computed by `conv_general_dilated` and `add_bias`.

  Attributes:
    features: O. kernel_size: (KH, KW). strides: (sh, sw).
    padding: ((top, bottom), (left, right)) zeros.
    use_bias: add a learned bias. dtype: computation dtype (None: the input's).
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
  use_bias: bool = True
  dtype: Any = None
  kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
  bias_init: nn.initializers.Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    bias = (self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias else None)
    dtype = self.dtype or x.dtype
    dims = lax.conv_dimension_numbers(x.shape, kernel.shape, NHWC)
    y = conv_general_dilated(x.astype(dtype), kernel.astype(dtype), self.strides,
                             tuple(tuple(p) for p in self.padding), dimension_numbers=dims)
    return y if bias is None else add_bias(y, bias)
