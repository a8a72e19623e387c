"""NVS model: latent rotation, align_corners upsampling, shapes, BatchNorm/dropout modes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import nvs as nvs_config
from geopose_jax.models import nvs
from geopose_jax.models import pose_head
from geopose_jax.models import resize
from geopose_jax.train import optim
from fake_poses import small_nvs_model  # tests/ is on sys.path under pytest


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
  q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
  q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
  q[np.linalg.det(q) < 0] *= -1  # proper rotations only
  return q


def random_variables(model: nvs.NVSModel, batch: int = 2, seed: int = 0) -> dict:
  """Model variables filled on the host (avoids compiling the random initialisers)."""
  images = jnp.zeros((batch, model.image_size, model.image_size, 3))
  shapes = jax.eval_shape(model.init, jax.random.key(0), images, images)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name in ("kernel",):
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def np_resize_align_corners(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """Direct definition, pixel by pixel: source = target * (in - 1) / (out - 1)."""
  b, h, w, c = x.shape
  out = np.zeros((b, height, width, c))
  for i in range(height):
    for j in range(width):
      y = i * (h - 1) / (height - 1) if height > 1 else 0.0
      z = j * (w - 1) / (width - 1) if width > 1 else 0.0
      y0, z0 = int(np.floor(y)), int(np.floor(z))
      y1, z1 = min(y0 + 1, h - 1), min(z0 + 1, w - 1)
      dy, dz = y - y0, z - z0
      out[:, i, j] = ((1 - dy) * ((1 - dz) * x[:, y0, z0] + dz * x[:, y0, z1])
                      + dy * ((1 - dz) * x[:, y1, z0] + dz * x[:, y1, z1]))
  return out


# ------------------------------------------------------------------------ latent rotation
def test_rotate_latent_inverse_composition_and_camera_change():
  rng = np.random.default_rng(0)
  r_i, r_j, r_k = (random_rotations(rng, 2) for _ in range(3))  # world -> camera i, j, k
  geometry = rng.standard_normal((2, 7, 3))
  rel_ij = r_j @ np.swapaxes(r_i, 1, 2)
  rel_jk = r_k @ np.swapaxes(r_j, 1, 2)
  rel_ik = r_k @ np.swapaxes(r_i, 1, 2)

  back = nvs.rotate_latent(nvs.rotate_latent(geometry, rel_ij), np.swapaxes(rel_ij, 1, 2))
  np.testing.assert_allclose(back, geometry, atol=1e-5)
  two_steps = nvs.rotate_latent(nvs.rotate_latent(geometry, rel_ij), rel_jk)
  np.testing.assert_allclose(two_steps, nvs.rotate_latent(geometry, rel_ik), atol=1e-5)
  # Each point (a row) is multiplied by R: p' = R p.
  expected = np.stack([[rel_ij[b] @ p for p in geometry[b]] for b in range(2)])
  np.testing.assert_allclose(nvs.rotate_latent(geometry, rel_ij), expected, atol=1e-5)
  # World points seen from camera i, moved into camera j, are what camera j sees.
  world = rng.standard_normal((2, 7, 3))
  in_i = np.einsum("bij,bnj->bni", r_i, world)
  in_j = np.einsum("bij,bnj->bni", r_j, world)
  np.testing.assert_allclose(nvs.rotate_latent(in_i, rel_ij), in_j, atol=1e-5)


# ---------------------------------------------------------------------------- upsampling
def test_align_corners_worked_example():
  x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
  third = 1.0 / 3.0
  expected = np.array([
      [1, 1 + third, 2 - third, 2],
      [1 + 2 * third, 2, 2 + third, 3 - third],
      [3 - 2 * third, 3 - third, 3, 3 + third],
      [3, 3 + third, 4 - third, 4]])
  np.testing.assert_allclose(resize.upsample2x_align_corners(x)[0, ..., 0], expected, atol=1e-6)


@pytest.mark.parametrize("size_in,size_out",
                         [((3, 5), (6, 10)), ((4, 3), (7, 5)), ((1, 2), (2, 4))])
def test_align_corners_resize_matches_direct_formula(size_in, size_out):
  x = np.random.default_rng(1).standard_normal((2, *size_in, 3)).astype(np.float32)
  got = np.asarray(resize.resize_bilinear_align_corners(x, *size_out))
  np.testing.assert_allclose(got, np_resize_align_corners(x, *size_out), atol=1e-5)
  if size_in[0] > 1:
    np.testing.assert_allclose(got[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]],
                               atol=1e-6)


def test_align_corners_resize_gradient_is_the_adjoint():
  rng = np.random.default_rng(5)
  x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
  g = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
  grad = jax.grad(lambda x: (resize.resize_bilinear_align_corners(x, 9, 8) * g).sum())(x)
  rows, cols = resize.align_corners_matrix(5, 9), resize.align_corners_matrix(4, 8)
  expected = np.einsum("Hh,Ww,bHWc->bhwc", rows, cols, g)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)


def test_align_corners_differs_from_half_pixel_resize():
  x = np.random.default_rng(2).standard_normal((1, 4, 4, 2)).astype(np.float32)
  ours = resize.upsample2x_align_corners(x)
  half_pixel = jax.image.resize(x, (1, 8, 8, 2), "bilinear")
  assert np.abs(np.asarray(ours) - np.asarray(half_pixel)).max() > 1e-2


# -------------------------------------------------------------------------- model shapes
def test_paper_config_shapes_at_128():
  model = nvs.NVSModel()
  images = jax.ShapeDtypeStruct((4, 128, 128, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images, images)
  appearance, geometry = jax.eval_shape(
      lambda v, x: model.apply(v, x, method="encode"), variables, images)
  assert appearance.shape == (4, 128) and geometry.shape == (4, 200, 3)
  image = jax.eval_shape(lambda v, a, g, b: model.apply(v, a, g, b, method="decode"),
                         variables, appearance, geometry, images)
  assert image.shape == (4, 128, 128, 3) and image.dtype == jnp.float32
  assert variables["params"]["from_latent"]["kernel"].shape == (600, 128 * 16 * 16)


def test_padded_variant_accepts_small_images():
  model = small_nvs_model(image_size=32, to_vec_padded=True)
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images, images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, x), variables, images)
  assert out.shape == (2, 32, 32, 3)


def test_bad_configuration_and_inputs_fail_clearly():
  images = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match="too small"):
    jax.eval_shape(small_nvs_model(image_size=64).init, jax.random.key(0), images, images)
  with pytest.raises(ValueError, match="appearance_dim"):
    jax.eval_shape(small_nvs_model(image_size=64, appearance_dim=64, to_vec_padded=True).init,
                   jax.random.key(0), images, images)
  with pytest.raises(ValueError, match=r"\(B, 128, 128, 3\)"):
    jax.eval_shape(small_nvs_model().init, jax.random.key(0), images, images)
  with pytest.raises(ValueError, match="unknown NVSModel fields"):
    small_nvs_model(widht=3)


def test_train_and_eval_modes_of_the_small_model():
  model = small_nvs_model(image_size=32, to_vec_padded=True)
  frozen = small_nvs_model(image_size=32, to_vec_padded=True, frozen_stem_batch_stats=True)
  variables = random_variables(model)
  rng = np.random.default_rng(3)
  images = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
  background = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
  rotation = random_rotations(rng, 2).astype(np.float32)

  @jax.jit
  def run(variables, key):
    def train_out(m, key):
      return m.apply(variables, images, background, rotation, True, rngs={"dropout": key},
                     mutable=["batch_stats"])
    out_a, stats_a = train_out(model, key)
    out_b, _ = train_out(model, jax.random.fold_in(key, 1))
    _, stats_frozen = train_out(frozen, key)
    eval_out = model.apply(variables, images, background, rotation, False)
    return out_a, out_b, stats_a, stats_frozen, eval_out

  out_a, out_b, stats, stats_frozen, eval_out = run(variables, jax.random.key(0))
  assert out_a.shape == eval_out.shape == (2, 32, 32, 3)
  assert np.all(np.isfinite(eval_out))
  assert np.abs(np.asarray(out_a) - np.asarray(out_b)).max() > 1e-4  # dropout is on
  old = variables["batch_stats"]["encoder"]
  for name in ("layer1", "layer3"):
    assert not np.allclose(stats["batch_stats"]["encoder"][name]["0"]["bn1"]["mean"],
                           old[name]["0"]["bn1"]["mean"])
  frozen_stats = stats_frozen["batch_stats"]["encoder"]
  np.testing.assert_array_equal(frozen_stats["layer1"]["0"]["bn1"]["mean"],
                                old["layer1"]["0"]["bn1"]["mean"])
  np.testing.assert_array_equal(frozen_stats["bn1"]["var"], old["bn1"]["var"])
  assert not np.allclose(frozen_stats["layer3"]["0"]["bn1"]["mean"],
                         old["layer3"]["0"]["bn1"]["mean"])


def test_stage1_frozen_patterns():
  model = small_nvs_model()
  images = jnp.zeros((1, 128, 128, 3))
  params = jax.eval_shape(model.init, jax.random.key(0), images, images)["params"]
  labels = optim.frozen_labels(params, nvs_config.STAGE1_FROZEN)
  enc = labels["encoder"]
  for name in ("conv1", "bn1", "layer1", "layer2"):
    assert set(jax.tree.leaves(enc[name])) == {"frozen"}
  for name in ("layer3", "layer4_reg", "l4_reg_toVec", "fc"):
    assert set(jax.tree.leaves(enc[name])) == {"trained"}
  assert set(jax.tree.leaves({k: v for k, v in labels.items() if k != "encoder"})) == {"trained"}


def test_image_normalisation_round_trip():
  images = np.random.default_rng(4).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
  normalised = nvs.normalize_image(images)
  np.testing.assert_allclose(normalised[0, 0, 0, 0],
                             (images[0, 0, 0, 0] / 255 - 0.485) / 0.229, rtol=1e-5)
  np.testing.assert_array_equal(nvs.to_uint8_image(normalised), images)
  np.testing.assert_allclose(nvs.denormalize_image(normalised), images / 255.0, atol=1e-6)


def test_mixed_precision_keeps_float32_parameters_and_outputs():
  model = small_nvs_model(dtype=jnp.bfloat16)
  images = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images, images)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  appearance, geometry = jax.eval_shape(
      lambda v, x: model.apply(v, x, method="encode"), variables, images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, x), variables, images)
  assert appearance.dtype == geometry.dtype == out.dtype == jnp.float32


def test_pose_head_train_mode_uses_batch_statistics():
  head = pose_head.PoseHead(hidden_dim=8, output_dim=5, dropout=0.0)
  rng = np.random.default_rng(6)
  latent = rng.standard_normal((6, 4, 3)).astype(np.float32)
  shapes = jax.eval_shape(head.init, jax.random.key(0), latent)
  variables = jax.tree.map(
      lambda s: (rng.standard_normal(s.shape) * 0.3 + (s.shape == (8,))).astype(np.float32),
      shapes)
  out, updates = jax.jit(lambda v, x: head.apply(v, x, True, mutable=["batch_stats"],
                                                 rngs={"dropout": jax.random.key(1)}))(
                                                     variables, latent)
  p = jax.tree.map(np.asarray, variables["params"])

  def bn(x, name):
    return ((x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * p[name]["scale"] + p[name]["bias"])

  x = latent.reshape(6, -1)
  h1 = np.maximum(x @ p["0"]["kernel"] + p["0"]["bias"], 0)
  x = bn(h1, "2")
  x = bn(np.maximum(x @ p["4"]["kernel"] + p["4"]["bias"], 0), "6")
  np.testing.assert_allclose(out, x @ p["8"]["kernel"] + p["8"]["bias"], rtol=1e-4, atol=1e-4)
  old_mean = np.asarray(variables["batch_stats"]["2"]["mean"])
  np.testing.assert_allclose(updates["batch_stats"]["2"]["mean"],
                             0.9 * old_mean + 0.1 * h1.mean(0), rtol=1e-4, atol=1e-6)
