"""BatchNorm: PyTorch's running statistics, one-pass float32 moments, sharded batches."""

import jax
import jax.numpy as jnp
import numpy as np

from geopose_jax.models import batch_norm


def test_running_statistics_and_output_follow_pytorch():
  bn = batch_norm.BatchNorm()
  x = jax.random.normal(jax.random.key(0), (6, 5, 3)) * 2 + 1
  variables = bn.init(jax.random.key(1), x, use_running_average=False)
  y, updates = bn.apply(variables, x, use_running_average=False, momentum=0.25,
                        mutable=["batch_stats"])
  flat = np.asarray(x, np.float64).reshape(-1, 3)
  np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.25 * flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(updates["batch_stats"]["var"], 0.75 + 0.25 * flat.var(0, ddof=1),
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 3),
                             (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5), rtol=1e-4,
                             atol=1e-5)
  # Inference uses the running statistics: (x - 0) / sqrt(1 + eps) with the initial ones.
  y_eval = bn.apply(variables, x, use_running_average=True)
  np.testing.assert_allclose(y_eval, np.asarray(x) / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_moments_are_float32_for_bfloat16_input_and_match_numpy():
  x = (np.random.default_rng(0).normal(size=(4, 7, 9, 16)) * 3 + 5).astype(np.float32)
  mean, mean_sq = batch_norm.moments(jnp.asarray(x, jnp.bfloat16))
  assert mean.dtype == mean_sq.dtype == jnp.float32
  x16 = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64).reshape(-1, 16)
  np.testing.assert_allclose(mean, x16.mean(0), rtol=1e-5)
  np.testing.assert_allclose(mean_sq, (x16 ** 2).mean(0), rtol=1e-5)
  y = batch_norm.BatchNorm(dtype=jnp.bfloat16).init_with_output(
      jax.random.key(0), jnp.asarray(x), use_running_average=False)[0]
  assert y.dtype == jnp.bfloat16


def test_gradient_matches_the_two_pass_formula():
  x = jax.random.normal(jax.random.key(2), (8, 5, 4)) * 1.5 - 0.5
  bn = batch_norm.BatchNorm()
  variables = bn.init(jax.random.key(0), x, use_running_average=False)
  weights = jax.random.normal(jax.random.key(3), x.shape)

  def ours(x):
    y, _ = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    return jnp.sum(y * weights)

  def reference(x):
    mean = x.mean((0, 1))
    var = jnp.mean(jnp.square(x - mean), (0, 1))
    return jnp.sum((x - mean) / jnp.sqrt(var + 1e-5) * weights)

  np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(reference)(x), rtol=1e-4, atol=1e-5)


def test_statistics_of_a_sharded_batch_are_those_of_the_whole_batch(four_devices):
  mesh = jax.make_mesh((4,), ("data",))  # explicit axes, as the training mesh
  x = np.random.default_rng(1).normal(size=(8, 3, 6)).astype(np.float32)
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      "data")))
  mean, mean_sq = jax.jit(batch_norm.moments)(sharded)
  np.testing.assert_allclose(mean, x.reshape(-1, 6).mean(0), rtol=1e-5)
  np.testing.assert_allclose(mean_sq, (x.reshape(-1, 6) ** 2).mean(0), rtol=1e-5)


def _scale_and_bias_gradients(x, weights):
  """d/d(scale, bias) of sum(BatchNorm(x) * weights): ours, and the textbook formula."""
  bn = batch_norm.BatchNorm(scale_init=lambda *a: jnp.asarray([0.5, 2.0, -1.0]))
  variables = bn.init(jax.random.key(0), x, use_running_average=False)

  def ours(params):
    y, _ = bn.apply({**variables, "params": params}, x, use_running_average=False,
                    mutable=["batch_stats"])
    return jnp.sum(y * weights)

  def reference(params):
    mean = x.mean((0, 1))
    var = jnp.mean(jnp.square(x - mean), (0, 1))
    y = (x - mean) / jnp.sqrt(var + 1e-5) * params["scale"] + params["bias"]
    return jnp.sum(y * weights)

  return jax.jit(jax.grad(ours))(variables["params"]), jax.grad(reference)(variables["params"])


def test_scale_and_bias_gradients_are_the_channel_sums():
  x = jax.random.normal(jax.random.key(4), (8, 5, 3)) * 2.0 + 0.3
  weights = jax.random.normal(jax.random.key(5), x.shape)
  ours, reference = _scale_and_bias_gradients(x, weights)
  np.testing.assert_allclose(ours["scale"], reference["scale"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ours["bias"], reference["bias"], rtol=1e-5, atol=1e-5)
  # By hand: d bias = sum of the weights over all but the channel axis.
  np.testing.assert_allclose(ours["bias"], np.asarray(weights).reshape(-1, 3).sum(0), rtol=1e-5)


def test_scale_and_bias_gradients_of_a_sharded_batch(four_devices):
  mesh = jax.make_mesh((4,), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  x = jax.random.normal(jax.random.key(6), (8, 5, 3))
  weights = jax.random.normal(jax.random.key(7), x.shape)
  with jax.set_mesh(mesh):
    ours, reference = _scale_and_bias_gradients(jax.device_put(x, sharding),
                                                jax.device_put(weights, sharding))
  np.testing.assert_allclose(ours["scale"], reference["scale"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ours["bias"], reference["bias"], rtol=1e-5, atol=1e-5)
