"""Lifter, discriminators and the 2D normalisation of the self-supervised lifter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax.models import discriminators
from geopose_jax.models import lifter as lifter_lib

C = 10.0


def _random_poses(seed, batch=5, joints=17):
  return np.random.default_rng(seed).normal(size=(batch, joints, 2)).astype(np.float32)


def test_normalize_pose_2d_matches_loop_reference():
  poses = _random_poses(0) * 300.0 + 500.0   # pixel-like, off-centre
  got = np.asarray(lifter_lib.normalize_pose_2d(poses, C))
  for b in range(poses.shape[0]):
    centred = poses[b] - poses[b, 0]
    mean_dist = np.mean([np.hypot(*centred[j]) for j in range(1, 17)])
    np.testing.assert_allclose(got[b], centred / (C * mean_dist), rtol=1e-5, atol=1e-7)
  # The convention itself: root at the origin, mean joint-to-root distance 1 / c.
  np.testing.assert_allclose(got[:, 0], 0.0, atol=1e-7)
  np.testing.assert_allclose(np.linalg.norm(got[:, 1:], axis=-1).mean(-1), 1.0 / C, rtol=1e-5)


def test_normalize_pose_2d_is_invariant_to_translation_and_scale():
  poses = _random_poses(1)
  moved = poses * 3.7 + np.array([0.4, -1.2], np.float32)
  np.testing.assert_allclose(lifter_lib.normalize_pose_2d(moved, C),
                             lifter_lib.normalize_pose_2d(poses, C), rtol=1e-4, atol=1e-6)


def test_depth_and_unprojection_by_hand():
  offsets = jnp.array([-12.0, -10.0, 0.0, 2.5])
  np.testing.assert_allclose(lifter_lib.depth_from_offsets(offsets, C), [1.0, 1.0, 11.0, 13.5])
  pose = jnp.array([[[0.1, -0.2], [0.0, 0.05]]])
  depth = jnp.array([[11.0, 4.0]])
  expected = np.array([[[1.1, -2.2, 11.0], [0.0, 0.2, 4.0]]])
  np.testing.assert_allclose(lifter_lib.unproject(pose, depth), expected, rtol=1e-6)
  np.testing.assert_allclose(lifter_lib.project(expected), pose, rtol=1e-6)


def test_lifter_only_chooses_depth():
  model = lifter_lib.Lifter(features=32, num_blocks=2, dropout=0.5, depth_offset=C)
  x = lifter_lib.normalize_pose_2d(_random_poses(2, batch=6), C)
  variables = model.init(jax.random.key(0), x)
  assert set(variables) == {"params", "batch_stats"}
  out, updates = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                             mutable=["batch_stats"])
  assert out.shape == (6, 17, 3)
  assert np.all(np.asarray(out[..., 2]) >= 1.0)
  # Whatever depths it predicts, the lifted pose projects back onto its input.
  np.testing.assert_allclose(lifter_lib.project(out), x, rtol=1e-4, atol=1e-6)
  # Train-mode BatchNorm moved its running statistics.
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                         variables["batch_stats"])
  assert any(jax.tree.leaves(changed))


def test_discriminator_shapes_and_temporal_uses_the_difference():
  x, y = _random_poses(3), _random_poses(4)
  disc = discriminators.PoseDiscriminator(features=16, num_blocks=2)
  params = disc.init(jax.random.key(0), x)
  assert disc.apply(params, x).shape == (5,)
  temporal = discriminators.TemporalDiscriminator(features=16, num_blocks=2)
  t_params = temporal.init(jax.random.key(1), x, y)
  shift = np.float32(0.7)
  np.testing.assert_allclose(temporal.apply(t_params, x + shift, y + shift),
                             temporal.apply(t_params, x, y), rtol=1e-5, atol=1e-5)
  # ... and it is the pose discriminator applied to x - y.
  inner = {"params": t_params["params"]["difference"]}
  np.testing.assert_allclose(temporal.apply(t_params, x, y), disc.apply(inner, x - y),
                             rtol=1e-6)


def test_domain_adapter_starts_as_identity_and_can_move():
  adapter = lifter_lib.DomainAdapter2D(features=16, num_blocks=1)
  x = _random_poses(5)
  params = adapter.init(jax.random.key(0), x)
  np.testing.assert_allclose(adapter.apply(params, x), x)

  def moved(p):
    return jnp.sum(adapter.apply(p, x))

  grads = jax.grad(moved)(params)
  assert float(jnp.abs(grads["params"]["residual"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("num_blocks", [0, 3])
def test_lifter_block_count(num_blocks):
  model = lifter_lib.Lifter(features=8, num_blocks=num_blocks)
  params = model.init(jax.random.key(0), jnp.zeros((2, 17, 2)))["params"]
  assert sum(k.startswith("ResidualBlock") for k in params) == num_blocks


def test_normalisation_gradient_is_finite_at_the_root():
  grads = jax.grad(lambda p: jnp.sum(lifter_lib.normalize_pose_2d(p, C) ** 2))(
      jnp.asarray(_random_poses(6)))
  assert np.all(np.isfinite(np.asarray(grads)))
