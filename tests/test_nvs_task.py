"""NVS stage 1: batch composition, losses, frozen layers, the train step, starting points."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from configs import nvs as nvs_config
from geopose_jax import losses
from geopose_jax.errors import ConfigError
from geopose_jax.models import nvs as nvs_model
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.tasks import nvs
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState

TINY_NET = dict(
    encoder_depth=(1, 1, 1), width=4, block="bottleneck", layer4_reg_blocks=1,
    to_vec_channels=(8, 8), to_vec_padded=True, bottleneck_num_latent_points=8,
    appearance_dim=4, decoder_channels=(4, 8, 12), dropout=0.0, image_size=16,
    frozen_stem_batch_stats=False)


def tiny_config(**overrides):
  config = nvs_config.get_config("demo")
  config.model.net.update(TINY_NET)
  config.loss.perceptual_without_weights = "off"
  config.optim.lr = 3e-3
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def random_rotations(rng, n):
  q = rng.normal(size=(n, 4))
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  w, x, y, z = q.T
  return np.stack([
      np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
      np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
      np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
  ], -2).astype(np.float32)


def fake_batch(batch_size=8, size=16, seed=0):
  """Images of one flat colour per item (item i's colour encodes i), distinct backgrounds."""
  rng = np.random.default_rng(seed)
  colours = rng.integers(0, 256, (batch_size, 3))
  image = np.broadcast_to(colours[:, None, None, :], (batch_size, size, size, 3)).astype(np.uint8)
  background = (255 - image).copy()
  return {"image": image.copy(), "background": background,
          "R": random_rotations(rng, batch_size)}


@pytest.mark.parametrize("seed", range(6))
def test_pair_permutations_follow_the_original_composition(seed):
  batch_size = 16
  target, appearance = map(np.asarray, nvs.pair_permutations(jax.random.key(seed), batch_size))
  index = np.arange(batch_size)
  # Target: the sample itself or its pair partner, and every view is some sample's target.
  assert set(np.unique(target ^ index)) <= {0, 1}
  np.testing.assert_array_equal(np.sort(target), index)
  # One coin per pair: both members swap or neither does.
  np.testing.assert_array_equal((target ^ index)[0::2], (target ^ index)[1::2])
  # Appearance: a view of the *other* instant of the same group of 4, never of its own pair.
  np.testing.assert_array_equal(appearance // 4, index // 4)
  np.testing.assert_array_equal((appearance // 2) % 2, 1 - (index // 2) % 2)


def test_pair_permutations_draw_both_outcomes_evenly():
  swaps, app_swaps = [], []
  for seed in range(40):
    target, appearance = map(np.asarray, nvs.pair_permutations(jax.random.key(seed), 32))
    swaps.append((target != np.arange(32)).mean())
    app_swaps.append((appearance % 2 != np.arange(32) % 2).mean())
  assert 0.35 < np.mean(swaps) < 0.65
  assert 0.35 < np.mean(app_swaps) < 0.65


def test_pair_permutations_reject_partial_groups():
  with pytest.raises(ValueError, match="multiple of 4"):
    nvs.pair_permutations(jax.random.key(0), 6)


def test_gather_in_groups_equals_indexing():
  x = np.random.default_rng(0).normal(size=(12, 2, 3)).astype(np.float32)
  for seed in range(3):
    target, appearance = nvs.pair_permutations(jax.random.key(seed), 12)
    for index in (target, appearance):
      np.testing.assert_array_equal(synthesis.gather_in_groups(jnp.asarray(x), index),
                                    x[np.asarray(index)])


def test_eval_permutations_target_the_other_view_with_own_appearance():
  target, appearance = nvs.eval_permutations(8)
  np.testing.assert_array_equal(target, [1, 0, 3, 2, 5, 4, 7, 6])
  np.testing.assert_array_equal(appearance, np.arange(8))


def test_compose_batch_targets_backgrounds_and_rotations():
  batch = fake_batch(8)
  target = np.array([1, 0, 2, 3, 5, 4, 6, 7], np.int32)
  appearance = np.array([2, 3, 1, 0, 7, 6, 4, 5], np.int32)
  composed = nvs.compose_batch(batch, jnp.asarray(target), jnp.asarray(appearance), 16)
  norm = lambda x: np.asarray(nvs_model.normalize_image(x))  # noqa: E731
  np.testing.assert_allclose(composed["images"], norm(batch["image"]), atol=1e-6)
  np.testing.assert_allclose(composed["targets"], norm(batch["image"][target]), atol=1e-6)
  # The decoder draws over the *target* view's background.
  np.testing.assert_allclose(composed["backgrounds"], norm(batch["background"][target]),
                             atol=1e-6)
  np.testing.assert_array_equal(composed["appearance"], appearance)
  # The rotation carries points from camera i into camera target[i]: x_t = x_i R^T.
  world = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
  for i in range(8):
    x_i = world @ batch["R"][i].T
    x_t = world @ batch["R"][target[i]].T
    np.testing.assert_allclose(x_i @ np.asarray(composed["rotations"][i]).T, x_t, atol=1e-5)


class StubNVS(nn.Module):
  """encode: appearance = mean colour (B, 3), geometry = mean colour as one point (B, 1, 3);
  decode: background + appearance + 10 * geometry, per pixel. Numbers a test can follow."""

  def encode(self, images, train=False):
    del train
    colour = images.mean(axis=(1, 2))
    return colour, colour[:, None, :]

  def decode(self, appearance, geometry, background, train=False):
    del train
    return background + (appearance + 10.0 * geometry[:, 0])[:, None, None, :]


def test_synthesis_uses_rotated_latent_swapped_appearance_and_target_background():
  batch = fake_batch(4)
  target, appearance = jnp.array([1, 0, 2, 3]), jnp.array([2, 3, 0, 1])
  c = nvs.compose_batch(batch, target, appearance, 16)
  output, _ = synthesis.synthesize(StubNVS(), {}, c["images"], c["rotations"], c["appearance"],
                             c["backgrounds"], train=False)
  colour = np.asarray(c["images"]).mean(axis=(1, 2))
  rotated = np.einsum("bij,bj->bi", np.asarray(c["rotations"]), colour)  # x R^T per row
  expected = (np.asarray(nvs_model.normalize_image(batch["background"]))[np.asarray(target)]
              + (colour[np.asarray(appearance)] + 10.0 * rotated)[:, None, None, :])
  np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-4)


def test_reconstruction_losses_match_numpy_with_padding():
  rng = np.random.default_rng(0)
  out, tgt = rng.normal(size=(2, 4, 5, 5, 3)).astype(np.float32)
  valid = np.array([True, True, False, True])
  features = lambda x: [x, 2 * x[:, ::2, ::2]]  # noqa: E731  (a stand-in feature network)
  terms = losses.reconstruction_losses(jnp.asarray(out), jnp.asarray(tgt), features, 1.0, 2.0,
                                       jnp.asarray(valid))
  l1 = np.abs(out - tgt)[valid].mean()
  perceptual = (np.abs(out - tgt)[valid].mean()
                + np.abs(2 * out[:, ::2, ::2] - 2 * tgt[:, ::2, ::2])[valid].mean()) / 2
  np.testing.assert_allclose(terms["l1"], l1, rtol=1e-5)
  np.testing.assert_allclose(terms["perceptual"], perceptual, rtol=1e-5)
  np.testing.assert_allclose(terms["loss"], l1 + 2 * perceptual, rtol=1e-5)


def test_frozen_pattern_must_name_parameters():
  params = {"encoder": {"conv1": {"kernel": jnp.zeros(2)}, "fc": {"kernel": jnp.zeros(2)}}}
  labels = optim.frozen_labels(params, ("encoder/conv1/.*",))
  assert labels == {"encoder": {"conv1": {"kernel": "frozen"}, "fc": {"kernel": "trained"}}}
  with pytest.raises(ConfigError, match="encoder/layer9"):
    optim.frozen_labels(params, ("encoder/layer9/.*",))


def test_frozen_parameters_get_no_update_and_no_optimizer_moments():
  params = {"encoder": {"conv1": {"kernel": jnp.ones((2, 2))}, "fc": {"kernel": jnp.ones(3)}}}
  tx = optim.make_optimizer(common.optim_config(3e-3, frozen=("encoder/conv1/.*",)), params)
  state = TrainState.create(params, tx)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(3):
    state = state.apply_gradients(grads)
  np.testing.assert_array_equal(state.params["encoder"]["conv1"]["kernel"], 1.0)
  assert (np.asarray(state.params["encoder"]["fc"]["kernel"]) < 1.0).all()
  moments = [x for x in jax.tree.leaves(state.opt_state) if getattr(x, "shape", ()) == (2, 2)]
  assert not moments  # Adam keeps no state for the frozen layer.


def test_train_step_lowers_the_loss_and_keeps_frozen_layers_bit_identical():
  config = tiny_config()
  config.optim.frozen = nvs_config.STAGE1_FROZEN
  model = synthesis.build_model(config.model.net)
  state = nvs.init(jax.random.key(0), model=model, image_size=16, optim_config=config.optim)
  before = jax.tree.map(np.asarray, state.params)
  step = jax.jit(functools.partial(nvs.train_step, model=model, perceptual=None, image_size=16,
                                   l1_weight=1.0, perceptual_weight=2.0))
  batch = fake_batch(8)
  losses_seen = []
  for i in range(8):
    state, terms = step(state, batch, jax.random.key(i))
    losses_seen.append(float(terms["loss"]))
    np.testing.assert_allclose(terms["loss"], terms["l1"], rtol=1e-6)  # no perceptual term
  assert int(state.step) == 8
  assert np.mean(losses_seen[-2:]) < np.mean(losses_seen[:2]), losses_seen
  after = jax.tree.map(np.asarray, state.params)
  for name in ("conv1", "bn1", "layer1", "layer2"):
    for old, new in zip(jax.tree.leaves(before["encoder"][name]),
                        jax.tree.leaves(after["encoder"][name])):
      np.testing.assert_array_equal(old, new)
  assert not np.array_equal(before["encoder"]["fc"]["kernel"], after["encoder"]["fc"]["kernel"])


def test_eval_step_sums_losses_over_valid_pairs():
  config = tiny_config()
  model = synthesis.build_model(config.model.net)
  variables = synthesis.init_variables(model, 16, jax.random.key(0))
  step = functools.partial(nvs.eval_step, model=model, perceptual=None, image_size=16,
                           l1_weight=1.0, perceptual_weight=2.0)
  batch = fake_batch(8) | {"valid": np.array([True] * 6 + [False] * 2)}
  sums = step(variables, batch)
  assert int(sums["count"]) == 6
  # Each view drawn in its pair partner's camera; L1 against the partner's image.
  target = np.arange(8) ^ 1
  images = synthesis.prepare_images(batch["image"], 16)
  output, _ = synthesis.synthesize(
      model, variables, images, jnp.asarray(batch["R"][target] @ np.swapaxes(batch["R"], 1, 2)),
      None, synthesis.prepare_images(batch["background"], 16)[target], train=False)
  l1 = np.abs(np.asarray(output) - np.asarray(images)[target])[:6].mean()
  np.testing.assert_allclose(float(sums["l1"]) / 6, l1, rtol=1e-4)


def _fake_torchvision_npz(path, variables):
  """A torchvision-named state dict (random values) for `variables`, saved as .npz."""
  from geopose_jax.convert import torch_io  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  state = {name: rng.normal(size=t.torch_shape).astype(np.float32)
           for name, t in torch_io.torch_names(variables).items()}
  np.savez(path, **state)
  return state


def test_perceptual_network_takes_resnet18_weights_from_a_file(tmp_path):
  from geopose_jax.models import resnet  # pylint: disable=g-import-not-at-top
  network = resnet.ResNet18Features(do_maxpooling=False)
  abstract = jax.eval_shape(network.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  state = _fake_torchvision_npz(tmp_path / "resnet18.npz", abstract)
  loaded = losses.load_resnet18_features(str(tmp_path / "resnet18.npz"), network)
  np.testing.assert_allclose(loaded["params"]["conv1"]["kernel"],
                             state["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_allclose(loaded["batch_stats"]["layer2"]["0"]["bn1"]["var"],
                             state["layer2.0.bn1.running_var"])
  with pytest.raises(FileNotFoundError, match="perceptual_weights"):
    losses.perceptual_network(str(tmp_path / "missing.pth"), 16)
  assert losses.perceptual_network("", 16, "off") is None


def test_perceptual_network_pools_after_conv1_as_the_published_configuration():
  from configs import nvs as nvs_config  # pylint: disable=g-import-not-at-top
  assert nvs_config.get_config().loss.perceptual_maxpool  # the original's do_maxpooling=True
  images = jnp.asarray(np.random.default_rng(0).standard_normal((1, 32, 32, 3)), jnp.float32)
  pooled = losses.perceptual_network("", 32, "random")(images)
  assert [f.shape for f in pooled] == [(1, 16, 16, 64), (1, 8, 8, 64), (1, 4, 4, 128)]
  unpooled = losses.perceptual_network("", 32, "random", maxpool=False)(images)
  assert [f.shape for f in unpooled] == [(1, 16, 16, 64), (1, 16, 16, 64), (1, 8, 8, 128)]
  np.testing.assert_array_equal(pooled[0], unpooled[0])  # same network up to the pooling


def test_encoder_weights_replace_only_the_imagenet_layers(tmp_path):
  config = tiny_config()
  config.model.net.update(width=64, encoder_depth=(3, 4, 6))  # ResNet-50's layer1..3
  model = synthesis.build_model(config.model.net)
  abstract = synthesis.abstract_variables(model, 16)
  imagenet = {c: {k: v for k, v in abstract[c]["encoder"].items()
                  if k in ("conv1", "bn1", "layer1", "layer2", "layer3")}
              for c in ("params", "batch_stats")}
  state = _fake_torchvision_npz(tmp_path / "resnet50.npz", imagenet)
  loaded = synthesis.load_encoder_weights(abstract, str(tmp_path / "resnet50.npz"))
  assert set(loaded["params"]["encoder"]) == {"conv1", "bn1", "layer1", "layer2", "layer3"}
  np.testing.assert_allclose(loaded["params"]["encoder"]["layer3"]["5"]["conv3"]["kernel"],
                             state["layer3.5.conv3.weight"].transpose(2, 3, 1, 0))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
  merged = synthesis.put_imagenet_encoder(zeros, str(tmp_path / "resnet50.npz"), model=model,
                                          image_size=16)
  np.testing.assert_allclose(merged["batch_stats"]["encoder"]["bn1"]["mean"],
                             state["bn1.running_mean"])
  np.testing.assert_allclose(merged["params"]["encoder"]["layer1"]["0"]["conv1"]["kernel"],
                             state["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))
  assert not np.asarray(merged["params"]["encoder"]["fc"]["kernel"]).any()  # untouched
