"""Soft silhouettes: agreement with a hard rasteriser, gradients, batching, fitting."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import ndimage

from geopose_jax.body import procedural, raster

SIZE = 48


def hard_silhouette(xy, faces, size, supersample=1):
  """Points inside any projected triangle (numpy, barycentric signs), on a grid of pixel
  centres refined `supersample` times: (size * supersample,) * 2, point (i, j) at
  image coordinates (j, i) / supersample."""
  n = size * supersample
  ys, xs = np.mgrid[0:n, 0:n] / supersample
  p = np.stack([xs.ravel(), ys.ravel()], -1)                            # (P, 2)
  tri = np.asarray(xy, np.float64)[np.asarray(faces)]                   # (F, 3, 2)
  inside = np.zeros(len(p), bool)
  for a, b, c in tri:
    def side(u, v):
      return (v[0] - u[0]) * (p[:, 1] - u[1]) - (v[1] - u[1]) * (p[:, 0] - u[0])
    s = np.stack([side(a, b), side(b, c), side(c, a)])
    inside |= np.all(s >= 0, 0) | np.all(s <= 0, 0)
  return inside.reshape(n, n)


def camera(size, distance=3.0, height=-0.3):
  """Looks at the body (facing +z) from the front: a half turn about x, image y down."""
  R = jnp.diag(jnp.array([1.0, -1.0, -1.0]))
  t = jnp.array([0.0, height, distance])
  f = 1.4 * size
  K = jnp.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
  return R, t, K


@pytest.fixture(scope="module")
def small_body():
  return procedural.procedural_body(detail=0.5)


def _check_against_hard(soft, xy, faces):
  """Pixels at least 2 px from every edge of the hard silhouette (found on a 4x finer grid,
  so that sub-pixel parts count) agree: soft > 0.5 inside, < 0.01 outside."""
  fine = hard_silhouette(xy, faces, soft.shape[0], supersample=4)
  far = np.where(fine, ndimage.distance_transform_edt(fine), ndimage.distance_transform_edt(~fine))
  away, hard = far[::4, ::4] >= 8.0, fine[::4, ::4]
  assert away.sum() > 0.5 * hard.size and (away & hard).sum() > 20
  assert np.all(soft[away & hard] > 0.5) and np.all(soft[away & ~hard] < 0.01)


def test_matches_hard_rasterisation_away_from_edges(small_body):
  # A body of small faces (windowed path) and two large triangles (dense path).
  R, t, K = camera(SIZE, distance=2.6)
  xy, depth = raster.project(jnp.asarray(small_body.v_template), R, t, K)
  quad_xy = jnp.array([[5.0, 6.0], [33.0, 4.5], [34.0, 30.0], [6.5, 31.0]])
  quad_faces = jnp.array([[0, 1, 2], [0, 2, 3]])

  @jax.jit
  def render(xy, depth, quad_xy):
    body = raster.soft_silhouette(xy, depth, small_body.faces, (SIZE, SIZE))
    quad = raster.soft_silhouette(quad_xy, jnp.ones(4), quad_faces, (SIZE, SIZE), window=4)
    return body, quad

  body_soft, quad_soft = render(xy, depth, quad_xy)
  _check_against_hard(np.asarray(body_soft), xy, small_body.faces)
  _check_against_hard(np.asarray(quad_soft), quad_xy, quad_faces)


def test_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    # A face for each footprint: ~1 px (small window), ~8 px (medium), ~30 px (whole image).
    xy = jnp.array([[2.2, 2.3], [3.1, 2.6], [2.5, 3.4],
                    [14.3, 4.1], [22.7, 6.2], [17.1, 11.4],
                    [-3.5, 9.5], [29.3, 31.2], [4.2, 33.5]], jnp.float64)
    faces = jnp.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    weights = jax.random.uniform(jax.random.PRNGKey(0), (32, 32), jnp.float64)

    def loss(xy):
      s = raster.soft_silhouette(xy, jnp.ones(9), faces, (32, 32), sigma=0.5, window=8,
                                 max_medium_faces=1, max_large_faces=1, tail=1e-6)
      return jnp.sum(weights * s)

    eps = 1e-5
    steps = eps * jnp.eye(18, dtype=jnp.float64).reshape(18, 9, 2)

    @jax.jit
    def grads(xy):
      fd = jax.vmap(lambda step: (loss(xy + step) - loss(xy - step)) / (2 * eps))(steps)
      return jax.grad(loss)(xy), fd.reshape(9, 2)

    grad, numeric = grads(xy)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(numeric).sum(-1) > 1e-3)   # every vertex matters


def test_degenerate_and_behind_camera_faces_are_rejected():
  xy = jnp.array([[4.0, 4.0], [14.0, 5.0], [8.0, 14.0], [9.0, 9.0], [12.0, 12.0]])
  depth = jnp.array([1.0, 1.0, 1.0, 1.0, -1.0])
  faces = jnp.array([[0, 1, 2]])
  with_bad = jnp.array([[0, 1, 2], [3, 3, 1], [0, 1, 4], [2, 2, 2]])

  @jax.jit
  def silhouettes_and_grads(xy):
    def loss(xy, faces):
      s = raster.soft_silhouette(xy, depth, faces, (16, 16))
      return jnp.sum(s ** 2), s
    return [jax.grad(loss, has_aux=True)(xy, f) for f in (faces, with_bad)]

  (grad, clean), (grad_bad, silhouette_bad) = silhouettes_and_grads(xy)
  np.testing.assert_allclose(silhouette_bad, clean, atol=1e-6)
  assert bool(jnp.all(jnp.isfinite(grad_bad)))
  np.testing.assert_allclose(grad_bad, grad, atol=1e-5)


def test_batched_chunked_render_equals_single(small_body):
  R, t, K = camera(24)
  vertices = jnp.asarray(small_body.v_template)[None] + jnp.array([[[0.0, 0, 0]], [[0.1, 0, 0]]])
  yaw = jnp.array([0.0, 0.4, -0.3])
  c, s = jnp.cos(yaw), jnp.sin(yaw)
  turn = jnp.stack([jnp.stack([c, 0 * c, s], -1), jnp.array([[0.0, 1, 0]] * 3),
                    jnp.stack([-s, 0 * c, c], -1)], -2)          # (3, 3, 3) about y
  Rs = jnp.broadcast_to(R @ turn, (2, 3, 3, 3))
  ts = jnp.broadcast_to(jnp.einsum("cab,b->ca", jnp.swapaxes(turn, -1, -2), t), (2, 3, 3))
  Ks = jnp.broadcast_to(K, (2, 3, 3, 3))
  batched = jax.jit(lambda v: raster.render_silhouettes(v, small_body.faces, Rs, ts, Ks, (24, 24),
                                                        chunk_size=4))(vertices)
  assert batched.shape == (2, 3, 24, 24)

  @jax.jit
  def single(vertices, R, t, K):
    xy, depth = raster.project(vertices, R, t, K)
    return raster.soft_silhouette(xy, depth, small_body.faces, (24, 24))

  for b in (0, 1):
    for cam in (0, 2):
      np.testing.assert_allclose(batched[b, cam], single(vertices[b], Rs[b, cam], ts[b, cam],
                                                         Ks[b, cam]), atol=1e-5)
  assert float(jnp.abs(batched[0, 0] - batched[1, 0]).max()) > 0.5   # the shift shows


def test_fitting_a_translation_moves_the_mesh_onto_the_target(small_body):
  R, t, K = camera(32)
  vertices = jnp.asarray(small_body.v_template)
  faces = small_body.faces
  target_shift = jnp.array([0.15, -0.1, 0.0])

  @jax.jit
  def render(shift):
    xy, depth = raster.project(vertices + shift, R, t, K)
    return raster.soft_silhouette(xy, depth, faces, (32, 32), sigma=1.0)

  target = render(target_shift) > 0.5
  optimizer = optax.adam(0.02)

  @jax.jit
  def step(shift, opt_state):
    loss, grad = jax.value_and_grad(lambda s: raster.silhouette_bce(render(s), target))(shift)
    updates, opt_state = optimizer.update(grad.at[2].set(0.0), opt_state)
    return optax.apply_updates(shift, updates), opt_state, loss

  shift = jnp.zeros(3)
  opt_state = optimizer.init(shift)
  first_iou = float(raster.silhouette_iou(render(shift), target))
  for _ in range(30):
    shift, opt_state, loss = step(shift, opt_state)
  assert float(jnp.linalg.norm(shift - target_shift)) < 0.03
  assert float(raster.silhouette_iou(render(shift), target)) > max(0.9, first_iou + 0.2)
