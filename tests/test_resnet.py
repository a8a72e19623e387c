"""ResNet blocks: PyTorch padding, pooling, BatchNorm conventions and layer structure."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.models import resnet


def np_conv(x, weight_hwio, stride, padding):
  """Direct cross-correlation with symmetric zero padding (PyTorch Conv2d semantics)."""
  k = weight_hwio.shape[0]
  x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  h = (x.shape[1] - k) // stride + 1
  w = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], h, w, weight_hwio.shape[-1]))
  for b in range(x.shape[0]):
    for i in range(h):
      for j in range(w):
        patch = x[b, i * stride:i * stride + k, j * stride:j * stride + k]
        out[b, i, j] = np.einsum("hwc,hwco->o", patch, weight_hwio)
  return out


class _Stem(nn.Module):
  @nn.compact
  def __call__(self, x):
    conv_out = resnet.conv(4, 7, 2, 3, name="conv1")(x)
    return conv_out, resnet.max_pool_3x3_s2(-jnp.abs(conv_out) - 1.0)


def test_strided_conv_pads_like_pytorch_and_pool_ignores_padding():
  for size in (9, 10):  # odd and even inputs
    x = np.random.default_rng(size).standard_normal((1, size, size, 3)).astype(np.float32)
    variables = _Stem().init(jax.random.key(0), x)
    conv_out, pooled = _Stem().apply(variables, x)
    kernel = np.asarray(variables["params"]["conv1"]["kernel"], np.float64)
    expected = np_conv(x.astype(np.float64), kernel, 2, 3)
    assert conv_out.shape == expected.shape == (1, (size + 1) // 2, (size + 1) // 2, 4)
    np.testing.assert_allclose(conv_out, expected, rtol=1e-4, atol=1e-4)
    # Max pool 3x3 s2 p1 on all-negative values: padding must never win.
    neg = -np.abs(np.asarray(expected)) - 1.0
    n = neg.shape[1]
    padded = np.pad(neg, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    m = (n + 2 - 3) // 2 + 1
    ref = np.array([[padded[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(0, 1))
                     for j in range(m)] for i in range(m)])[None]
    np.testing.assert_allclose(pooled, ref, rtol=1e-4, atol=1e-4)


def test_max_pool_gradient_matches_reduce_window():
  x = np.random.default_rng(1).standard_normal((2, 7, 8, 3)).astype(np.float32)
  g = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32)
  ours = jax.grad(lambda x: (resnet.max_pool_3x3_s2(x) * g).sum())(x)
  reference = jax.grad(lambda x: (nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1))) * g).sum())(x)
  np.testing.assert_allclose(ours, reference, atol=1e-6)


class _BN(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    return resnet.batch_norm(train, jnp.float32, "bn")(x)


def test_batch_norm_uses_pytorch_eps_and_momentum():
  x = np.random.default_rng(0).standard_normal((6, 3, 3, 2)).astype(np.float32) * 3 + 1
  variables = _BN().init(jax.random.key(0), x, False)
  y, updated = _BN().apply(variables, x, True, mutable=["batch_stats"])
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(updated["batch_stats"]["bn"]["mean"], 0.1 * mean, rtol=1e-5)
  # PyTorch updates the running variance with the unbiased batch variance.
  unbiased = x.var(axis=(0, 1, 2), ddof=1)
  np.testing.assert_allclose(updated["batch_stats"]["bn"]["var"], 0.9 + 0.1 * unbiased,
                             rtol=1e-5)
  y_eval = _BN().apply(variables, x, False)
  np.testing.assert_allclose(y_eval, x / np.sqrt(1 + 1e-5), rtol=1e-5)


def test_layers_project_the_shortcut_only_when_the_shape_changes():
  x = jax.ShapeDtypeStruct((2, 16, 16, 8), jnp.float32)
  layer = resnet.ResLayer("bottleneck", 4, 3, stride=2)
  params = jax.eval_shape(lambda x: layer.init(jax.random.key(0), x, False), x)["params"]
  assert "downsample" in params["0"] and "downsample" not in params["1"]
  assert params["0"]["downsample"]["0"]["kernel"].shape == (1, 1, 8, 16)
  out = jax.eval_shape(lambda x: layer.init_with_output(jax.random.key(0), x, False)[0], x)
  assert out.shape == (2, 8, 8, 16)
  same = resnet.ResLayer("basic", 8, 2, stride=1)
  params = jax.eval_shape(lambda x: same.init(jax.random.key(0), x, False), x)["params"]
  assert "downsample" not in params["0"]


def test_resnet18_features_shapes():
  x = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  for pool, sizes in ((True, (64, 32, 16)), (False, (64, 64, 32))):
    model = resnet.ResNet18Features(do_maxpooling=pool)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    feats = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert [f.shape for f in feats] == [(2, sizes[0], sizes[0], 64), (2, sizes[1], sizes[1], 64),
                                        (2, sizes[2], sizes[2], 128)]
  names = set(variables["params"])
  assert names == {"conv1", "bn1", "layer1", "layer2"}
