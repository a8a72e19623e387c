"""The hash-based dropout mask: kept fraction, independence, scaling, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax.models import dropout


def _mask(seed, shape, keep_prob):
  return np.asarray(dropout.keep_mask(jax.random.key(seed), shape, keep_prob))


@pytest.mark.parametrize("keep_prob", [0.5, 0.75, 0.8, 0.9])
def test_kept_fraction_is_binomial(keep_prob):
  n = 1 << 20
  kept = _mask(0, (n,), keep_prob).mean()
  # Five binomial standard deviations.
  assert abs(kept - keep_prob) < 5 * np.sqrt(keep_prob * (1 - keep_prob) / n)


def test_bits_are_uniform_bytes():
  bits = np.asarray(dropout.hash_bits(jax.random.key(3), (1 << 18,)))
  for shift in (0, 8, 16, 24):
    counts = np.bincount((bits >> shift) & 0xFF, minlength=256)
    expected = bits.size / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 255 + 6 * np.sqrt(2 * 255), (shift, chi2)  # ~6 sigma of chi2(255)


def test_neighbours_and_keys_are_uncorrelated():
  a = _mask(1, (512, 256), 0.5).astype(np.float64) * 2 - 1
  b = _mask(2, (512, 256), 0.5).astype(np.float64) * 2 - 1
  tolerance = 5 / np.sqrt(a.size)
  assert abs((a[:, 1:] * a[:, :-1]).mean()) < tolerance  # along a row
  assert abs((a[1:] * a[:-1]).mean()) < tolerance  # along the batch
  assert abs((a * b).mean()) < tolerance  # two keys
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, _mask(1, (512, 256), 0.5) * 2.0 - 1)  # reproducible


def test_module_scales_kept_values_and_is_identity_when_deterministic():
  x = jnp.full((64, 128), 3.0)
  layer = dropout.Dropout(0.2)
  y = np.asarray(layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}))
  assert set(np.unique(y)) <= {0.0, np.float32(3.0 / 0.8)}
  assert 0.75 < (y != 0).mean() < 0.85
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
  assert not np.asarray(dropout.Dropout(1.0).apply({}, x, deterministic=False)).any()
  with pytest.raises(ValueError, match="rate"):
    dropout.Dropout(1.5).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})


def test_mask_is_the_same_on_a_sharded_batch():
  """The mask depends on the element's global index, not on how the batch is split."""
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  x = jnp.ones((8 * jax.device_count(), 33))
  apply = jax.jit(lambda x, key: dropout.Dropout(0.5).apply(
      {}, x, deterministic=False, rngs={"dropout": key}))
  key = jax.random.key(5)
  np.testing.assert_array_equal(apply(jax.device_put(x, sharding), key), apply(x, key))
