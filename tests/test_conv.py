"""models/conv.py: the CPU-friendly convolution agrees with lax.conv_general_dilated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from geopose_jax.models import conv

# (input shape NHWC, kernel size, output channels, stride, padding): pointwise, exchanged
# kernel gradient ('same', fewer outputs), XLA's own (more outputs, valid, strided).
CASES = [
    ((2, 5, 6, 8), 1, 3, 1, (0, 0)),
    ((2, 9, 7, 6), 3, 4, 1, (1, 1)),
    ((3, 8, 8, 10), 5, 2, 1, (2, 2)),
    ((2, 9, 7, 3), 3, 5, 1, (1, 1)),
    ((2, 9, 7, 6), 3, 4, 1, (0, 0)),
    ((2, 9, 9, 4), 3, 4, 2, (1, 1)),
    ((2, 8, 8, 4), 1, 6, 2, (0, 0)),
    ((2, 9, 9, 4), 1, 3, 2, (0, 0)),
    ((2, 6, 6, 5), 5, 3, 2, (0, 0)),
    ((2, 4, 3, 5), 3, 2, 1, (0, 0)),
    ((2, 3, 3, 2), 5, 4, 2, (1, 1)),
    ((2, 16, 16, 3), 7, 5, 2, (3, 3)),
    ((2, 15, 13, 3), 3, 4, 2, (1, 1)),
    ((2, 17, 17, 2), 5, 3, 3, (2, 1)),
]


def _functions(kernel_size, stride, padding):
  pad = (padding, padding)
  dims = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), conv.NHWC)

  def reference(x, k):
    return lax.conv_general_dilated(x, k, (stride, stride), pad, dimension_numbers=dims)

  def ours(x, k):
    return conv.conv_general_dilated(x, k, (stride, stride), pad, dimension_numbers=dims)

  return reference, ours


@pytest.mark.parametrize("shape,kernel_size,features,stride,padding", CASES)
def test_values_and_gradients_match_lax(shape, kernel_size, features, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  k = jnp.asarray(rng.standard_normal((kernel_size, kernel_size, shape[-1], features)),
                  jnp.float32)
  reference, ours = _functions(kernel_size, stride, padding)
  y = reference(x, k)
  weights = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  np.testing.assert_allclose(jax.jit(ours)(x, k), y, rtol=1e-5, atol=1e-5)
  expected = jax.grad(lambda x, k: jnp.sum(reference(x, k) * weights), (0, 1))(x, k)
  got = jax.jit(jax.grad(lambda x, k: jnp.sum(ours(x, k) * weights), (0, 1)))(x, k)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_each_case_takes_the_intended_form():
  x = jnp.ones((2, 8, 8, 6))
  kinds = {}
  forms = {"pointwise": (1, 3, 1, (0, 0)), "strided pointwise": (1, 3, 2, (0, 0)),
           "window": (7, 3, 2, (0, 0)), "exchanged": (3, 4, 1, (1, 1)),
           "lax": (3, 8, 1, (1, 1))}
  for name, (k, features, stride, padding) in forms.items():
    _, ours = _functions(k, stride, padding)
    text = str(jax.make_jaxpr(ours)(x, jnp.ones((k, k, 6, features))))
    kinds[name] = ("dot_general" in text, "custom_vjp" in text, "conv_general_dilated" in text)
  _, ours = _functions(7, 2, (3, 3))
  text = str(jax.make_jaxpr(jax.grad(lambda x: ours(x, jnp.ones((7, 7, 3, 4))).sum()))(
      jnp.ones((2, 16, 16, 3))))
  assert "lhs_dilation=(1, 1)" in text and "lhs_dilation=(2, 2)" not in text  # space to depth
  assert kinds == {"pointwise": (True, False, False), "strided pointwise": (True, False, False),
                   "window": (True, False, False), "exchanged": (False, True, True),
                   "lax": (False, False, True)}
  # A strided convolution of many channels is lax's own, with its base-dilated input gradient.
  wide = conv.MAX_SPACE_TO_DEPTH_CHANNELS + 1
  _, ours = _functions(3, 2, (1, 1))
  text = str(jax.make_jaxpr(jax.grad(lambda x: ours(x, jnp.ones((3, 3, wide, 4))).sum()))(
      jnp.ones((2, 8, 8, wide))))
  assert "lhs_dilation=(2, 2)" in text


def test_kernel_gradient_by_hand():
  """A 1-channel 3x3 'same' convolution of a 2x2 image: d/dk[i, j] = sum_h x[h+i-1] dy[h]."""
  x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
  dy = jnp.asarray([[1.0, 0.0], [0.0, 2.0]]).reshape(1, 2, 2, 1)
  # Two channels in, one out, so that the exchanged form is the one taken.
  x2 = jnp.concatenate([x, 10 * x], axis=-1)
  dk = conv.kernel_gradient_exchanged(x2, dy, (3, 3, 2, 1), ((1, 1), (1, 1)))
  xp = np.pad(np.asarray(x2)[0], ((1, 1), (1, 1), (0, 0)))
  expected = np.zeros((3, 3, 2, 1))
  for i in range(3):
    for j in range(3):
      for h in range(2):
        for w in range(2):
          expected[i, j, :, 0] += xp[h + i, w + j] * float(dy[0, h, w, 0])
  np.testing.assert_allclose(dk, expected, rtol=1e-6)
  assert float(dk[1, 1, 0, 0]) == 1.0 * 1 + 4.0 * 2  # the centre tap: x . dy


@pytest.mark.parametrize("shape,kernel_size,features,stride,padding", [
    ((8, 6, 6, 5), 3, 2, 1, (1, 1)),     # exchanged
    ((8, 6, 6, 5), 1, 2, 2, (0, 0)),     # strided pointwise
    ((8, 6, 6, 5), 5, 2, 2, (0, 0)),     # window product
    ((8, 10, 10, 3), 7, 2, 2, (3, 3)),   # space to depth
])
def test_gradients_of_a_sharded_batch(four_devices, shape, kernel_size, features, stride,
                                      padding):
  mesh = jax.make_mesh((4,), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(1)
  x = rng.standard_normal(shape).astype(np.float32)
  k = rng.standard_normal((kernel_size, kernel_size, shape[-1], features)).astype(np.float32)
  reference, ours = _functions(kernel_size, stride, padding)
  weights = np.asarray(rng.standard_normal(reference(x, k).shape), np.float32)
  expected = jax.grad(lambda x, k: jnp.sum(reference(x, k) * weights), (0, 1))(x, k)
  with jax.set_mesh(mesh):
    xs, ws = jax.device_put(x, sharding), jax.device_put(weights, sharding)
    ks = jax.device_put(k, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    got = jax.jit(jax.grad(lambda x, k, w: jnp.sum(ours(x, k) * w), (0, 1)))(xs, ks, ws)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size,stride,padding,use_bias", [
    (3, 1, 1, True), (1, 2, 0, False), (7, 2, 3, False), (3, 2, 1, True)])
def test_conv_module_has_flax_parameters_and_agrees_with_nn_conv(kernel_size, stride, padding,
                                                                 use_bias):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
  common = dict(strides=(stride, stride), padding=((padding, padding), (padding, padding)),
                use_bias=use_bias, bias_init=nn.initializers.normal(1.0))
  ours = conv.Conv(4, (kernel_size, kernel_size), **common)
  theirs = nn.Conv(4, (kernel_size, kernel_size), **common)
  variables = ours.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, theirs.init(jax.random.key(1), x))
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5,
                             atol=1e-5)
  weights = jax.random.normal(jax.random.key(2), ours.apply(variables, x).shape)
  grad_ours = jax.grad(lambda v: jnp.sum(ours.apply(v, x) * weights))(variables)
  grad_theirs = jax.grad(lambda v: jnp.sum(theirs.apply(v, x) * weights))(variables)
  for a, b in zip(jax.tree.leaves(grad_ours), jax.tree.leaves(grad_theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
