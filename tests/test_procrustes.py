"""Procrustes alignment recovers known similarity transforms, never returns a reflection."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from geopose_jax.geometry import procrustes


def _known_transform(seed):
  rng = np.random.default_rng(seed)
  source = rng.normal(size=(4, 17, 3)) * 300.0
  s = rng.uniform(0.5, 2.0, size=4)
  r = Rotation.random(4, random_state=seed).as_matrix()
  t = rng.normal(size=(4, 3)) * 1000.0
  target = s[:, None, None] * np.einsum("bij,bnj->bni", r, source) + t[:, None, :]
  return source, target, s, r, t


def test_recovers_known_similarity_transform():
  source, target, s, r, t = _known_transform(0)
  s_fit, r_fit, t_fit = procrustes.similarity_transform(source, target)
  np.testing.assert_allclose(s_fit, s, rtol=1e-10)
  np.testing.assert_allclose(r_fit, r, atol=1e-10)
  np.testing.assert_allclose(t_fit, t, atol=1e-7)
  np.testing.assert_allclose(procrustes.procrustes_align(source, target), target, atol=1e-7)


def test_rigid_alignment_keeps_unit_scale():
  source, target, s, r, _ = _known_transform(1)
  s_fit, r_fit, _ = procrustes.similarity_transform(source, target, scale=False)
  np.testing.assert_allclose(s_fit, 1.0)
  # Scaling does not change the best rotation.
  np.testing.assert_allclose(r_fit, r, atol=1e-10)
  aligned = procrustes.procrustes_align(source, target, scale=False)
  # Rigid alignment preserves the source's shape: pairwise distances unchanged.
  d = lambda x: np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)  # noqa: E731
  np.testing.assert_allclose(d(aligned), d(source), atol=1e-7)


def test_reflection_is_not_returned():
  rng = np.random.default_rng(2)
  source = rng.normal(size=(8, 17, 3))
  mirror = np.diag([-1.0, 1.0, 1.0])
  target = source @ mirror  # a mirror image: the best orthogonal fit is a reflection
  s, r, _ = procrustes.similarity_transform(source, target)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-10)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-10)
  # It is the best proper rotation: no rotation from a dense sample does better.
  aligned = procrustes.procrustes_align(source, target)
  best = np.sum((aligned - target) ** 2, axis=(-2, -1))
  candidates = Rotation.random(300, random_state=3).as_matrix()
  src0 = source - source.mean(axis=1, keepdims=True)
  tgt0 = target - target.mean(axis=1, keepdims=True)
  for b in range(2):
    rotated = np.einsum("cij,nj->cni", candidates, src0[b])
    # Non-negative scales only: -R is itself a reflection.
    scales = np.maximum(np.sum(rotated * tgt0[b], axis=(1, 2)), 0) / np.sum(rotated ** 2,
                                                                          axis=(1, 2))
    residual = np.sum((scales[:, None, None] * rotated - tgt0[b]) ** 2, axis=(1, 2))
    assert best[b] <= residual.min() + 1e-9
  assert np.all(s > 0)


def test_jit_float32_matches_numpy():
  source, target, *_ = _known_transform(4)
  aligned = jax.jit(procrustes.procrustes_align)(jnp.asarray(source, jnp.float32),
                                                 jnp.asarray(target, jnp.float32))
  assert isinstance(aligned, jax.Array) and aligned.shape == source.shape
  np.testing.assert_allclose(aligned, target, atol=0.05)


def test_degenerate_source_is_finite():
  source = np.ones((17, 3))
  target = np.random.default_rng(5).normal(size=(17, 3))
  aligned = procrustes.procrustes_align(source, target)
  assert np.all(np.isfinite(aligned))
  np.testing.assert_allclose(aligned, np.broadcast_to(target.mean(0), (17, 3)), atol=1e-12)
