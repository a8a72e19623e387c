"""The self-supervised lifter's cycle, losses, train steps and the 3D-free training pipeline."""

import copy
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geopose_jax.errors import InputError

from configs import lifter as lifter_config
from geopose_jax import adversarial
from geopose_jax import lifting
from geopose_jax.geometry import rotations
from geopose_jax.geometry import virtual_camera
from geopose_jax.models import lifter as lifter_lib
from geopose_jax.tasks import lifter as task_lib
from geopose_jax.tasks import lifter_adapter as adapter_lib

C = 10.0


def tiny_config(variant="demo", **overrides):
  config = lifter_config.get_config(variant)
  config.model.features = 16
  config.model.num_blocks = 1
  if "disc" in config:
    config.disc.features = 16
    config.disc.num_blocks = 1
  config.train.batch_size = 8
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def _poses_3d(seed, batch=4):
  """Random body-sized 3D poses in front of the camera: root at depth ~c, radius ~1."""
  rng = np.random.default_rng(seed)
  pose = rng.normal(scale=0.5, size=(batch, 17, 3)).astype(np.float32)
  pose[:, 0] = 0.0
  pose += np.array([0.3, -0.2, C], np.float32)
  return jnp.asarray(pose)


def _batch_2d(seed, batch=8):
  rng = np.random.default_rng(seed)
  pose = rng.normal(scale=0.2, size=(batch, 17, 2)).astype(np.float32)
  return {"pose_2d": pose, "pose_2d_next": pose + 0.01 * rng.normal(size=pose.shape).astype(
      np.float32)}


def test_identity_rotation_and_perfect_lifter_give_zero_consistency_loss():
  truth = _poses_3d(0)
  x = lifter_lib.project(truth)
  depth = truth[..., 2]

  def perfect_lift(pose_2d):   # knows the true depth of every joint
    return lifter_lib.unproject(pose_2d, depth)

  eye = jnp.broadcast_to(jnp.eye(3), (4, 3, 3))
  for pivot in ("root", "fixed"):
    out = lifting.cycle(perfect_lift, x, eye, pivot=pivot, depth_offset=C)
    losses = lifting.consistency_losses(out, x)
    assert float(losses["cycle_2d"]) < 1e-12 and float(losses["cycle_3d"]) < 1e-10
    np.testing.assert_allclose(out["lifted"], truth, rtol=1e-5)


def test_perfect_lifter_under_a_real_rotation_closes_the_cycle():
  # A lifter that returns the true 3D of whichever view it is shown: the true pose, then the
  # same pose seen by the rotated virtual camera. Then x^ = x and Y~ = Y' exactly.
  truth = _poses_3d(1)
  x = lifter_lib.project(truth)
  rotation = rotations.random_azimuth_elevation(jax.random.key(3), (4,))
  seen = task_lib.rotate_about(truth, rotation, truth[:, :1])
  views = iter([truth, seen])

  def perfect_lift(pose_2d):
    pose_3d = next(views)
    np.testing.assert_allclose(lifter_lib.project(pose_3d), pose_2d, rtol=1e-5, atol=1e-6)
    return pose_3d

  out = lifting.cycle(perfect_lift, x, rotation, pivot="root", depth_offset=C)
  losses = lifting.consistency_losses(out, x)
  assert float(losses["cycle_2d"]) < 1e-10 and float(losses["cycle_3d"]) < 1e-10
  # A wrong lifter (flat poses) does not close it.
  flat = lambda p: lifter_lib.unproject(p, jnp.full(p.shape[:-1], C))
  wrong = lifting.consistency_losses(lifting.cycle(flat, x, rotation), x)
  assert float(wrong["cycle_2d"]) > 1e-6


def test_random_rotation_reprojection_matches_hand_computation():
  azimuth, elevation = 0.7, -0.25
  rotation = rotations.random_azimuth_elevation(
      jax.random.key(0), (1,), (azimuth, azimuth), (elevation, elevation))
  root = np.array([0.5, -0.3, 9.0])
  joint = np.array([1.2, 0.4, 10.5])
  points = jnp.asarray(np.stack([root, joint])[None], jnp.float32)
  projected = lifter_lib.project(task_lib.rotate_about(points, rotation, points[:, :1]))
  # By hand: offset from the root, turn about the vertical (y) axis, then tilt about x.
  dx, dy, dz = joint - root
  x1 = dx * math.cos(azimuth) + dz * math.sin(azimuth)
  z1 = -dx * math.sin(azimuth) + dz * math.cos(azimuth)
  y2 = dy * math.cos(elevation) - z1 * math.sin(elevation)
  z2 = dy * math.sin(elevation) + z1 * math.cos(elevation)
  expected_joint = [(root[0] + x1) / (root[2] + z2), (root[1] + y2) / (root[2] + z2)]
  expected_root = [root[0] / root[2], root[1] / root[2]]
  np.testing.assert_allclose(projected[0], [expected_root, expected_joint], rtol=1e-5)
  # The vertical coordinate of a joint level with the root does not change under azimuth.
  level = jnp.asarray([[root, root + np.array([1.0, 0.0, 0.0])]], jnp.float32)
  turn = rotations.random_azimuth_elevation(jax.random.key(0), (1,), (1.0, 1.0), (0.0, 0.0))
  assert abs(float(task_lib.rotate_about(level, turn, level[:, :1])[0, 1, 1]) - root[1]) < 1e-6


def test_pitched_camera_turns_the_body_about_the_world_vertical():
  pitch = 0.25
  rotation = virtual_camera.virtual_camera_rotation(jax.random.key(0), 6, camera_pitch=pitch,
                                              elevation_range=(0.0, 0.0))
  np.testing.assert_allclose(np.asarray(rotation @ jnp.swapaxes(rotation, -1, -2)),
                             np.broadcast_to(np.eye(3), (6, 3, 3)), atol=1e-5)
  # World "up" as a camera looking down by `pitch` sees it: fixed by every azimuth.
  up = np.array([0.0, -math.cos(pitch), -math.sin(pitch)], np.float32)
  np.testing.assert_allclose(np.asarray(rotation @ up), np.broadcast_to(up, (6, 3)), atol=1e-5)
  # Without pitch it is the camera's y axis that stays put.
  plain = virtual_camera.virtual_camera_rotation(jax.random.key(0), 6, elevation_range=(0.0, 0.0))
  np.testing.assert_allclose(np.asarray(plain[:, :, 1]), np.broadcast_to([0, 1, 0], (6, 3)),
                             atol=1e-6)
  assert not np.allclose(np.asarray(rotation @ np.array([0, 1.0, 0])), [0, 1, 0], atol=1e-2)


def test_gradients_reach_the_lifter_through_both_lift_passes():
  config = tiny_config()
  lifter, _, _ = task_lib.make_models(config)
  state = task_lib.init_state(config, jax.random.key(0))["lifter"]
  x = lifter_lib.normalize_pose_2d(_batch_2d(1)["pose_2d"], C)
  rotation = rotations.random_azimuth_elevation(jax.random.key(1), (8,))

  def loss(params_first, params_second):
    passes = iter([params_first, params_second])

    def lift(p):
      return lifter.apply({"params": next(passes), "batch_stats": state.batch_stats}, p)

    out = lifting.cycle(lift, x, rotation)
    terms = lifting.consistency_losses(out, x)
    return terms["cycle_2d"] + terms["cycle_3d"]

  g_first, g_second = jax.jit(jax.grad(loss, argnums=(0, 1)))(state.params, state.params)
  for grads in (g_first, g_second):
    norm = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads))
    assert np.isfinite(norm) and norm > 0


def test_wgan_gp_penalty_is_finite_and_nonzero_on_random_data():
  config = tiny_config()
  _, disc, _ = task_lib.make_models(config)
  rng = np.random.default_rng(0)
  real = jnp.asarray(rng.normal(size=(4, 17, 2)), jnp.float32)
  fake = jnp.asarray(rng.normal(size=(4, 17, 2)), jnp.float32)
  params = disc.init(jax.random.key(0), real)
  score = lambda m: disc.apply(params, m)
  penalty = adversarial.gradient_penalty(score, real, fake, jax.random.key(1))
  assert np.isfinite(float(penalty)) and float(penalty) > 0
  # Cross-check with a per-sample loop at the same interpolation weights.
  alpha = jax.random.uniform(jax.random.key(1), (4, 1, 1))
  grad_one = jax.jit(jax.grad(lambda m: score(m[None])[0]))
  expected = np.mean([
      (float(jnp.linalg.norm(grad_one(alpha[i] * real[i] + (1 - alpha[i]) * fake[i]))) - 1.0) ** 2
      for i in range(4)])
  np.testing.assert_allclose(float(penalty), expected, rtol=1e-4)


def test_gan_losses_by_hand():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  sp = lambda v: np.log1p(np.exp(v))
  expected = np.mean(sp(-np.array([2.0, -1.0]))) + np.mean(sp(np.array([0.5, -3.0])))
  np.testing.assert_allclose(adversarial.discriminator_loss(real, fake, "standard"), expected,
                             rtol=1e-6)
  np.testing.assert_allclose(adversarial.generator_loss(fake, "standard"),
                             np.mean(sp(-np.array([0.5, -3.0]))), rtol=1e-6)
  np.testing.assert_allclose(adversarial.discriminator_loss(real, fake, "wgan_gp"), -1.25 - 0.5)
  np.testing.assert_allclose(adversarial.generator_loss(fake, "wgan_gp"), 1.25)
  with pytest.raises(ValueError, match="gan kind"):
    adversarial.generator_loss(fake, "hinge")


@pytest.mark.parametrize("gan,update", [("wgan_gp", "alternate")])
def test_train_step_updates_the_players(gan, update):
  config = tiny_config(**{"loss.gan": gan, "train.gan_update": update})
  state = task_lib.init_state(config, jax.random.key(0))
  step = jax.jit(task_lib.make_train_step(config))
  new, metrics = step(state, _batch_2d(2), jax.random.key(1))
  assert all(np.isfinite(float(v)) for v in metrics.values())
  if gan == "wgan_gp":
    assert float(metrics["gp"]) > 0

  def moved(a, b):
    return any(bool(jnp.any(u != v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  lifter_moved = moved(new["lifter"].params, state["lifter"].params)
  disc_moved = moved(new["pose_disc"].params, state["pose_disc"].params)
  if update == "joint":
    assert lifter_moved and disc_moved
    assert moved(new["temporal_disc"].params, state["temporal_disc"].params)
  else:   # step 0 is the discriminators' turn, step 1 the lifter's
    assert disc_moved and not lifter_moved
    newer, _ = step(new, _batch_2d(3), jax.random.key(2))
    assert moved(newer["lifter"].params, new["lifter"].params)
    assert not moved(newer["pose_disc"].params, new["pose_disc"].params)


def test_train_step_refuses_3d_in_a_self_supervised_batch():
  config = tiny_config()
  state = task_lib.init_state(config, jax.random.key(0))
  batch = dict(_batch_2d(0), pose_3d_cam=np.zeros((8, 17, 3), np.float32))
  with pytest.raises(ValueError, match="may not see 3D"):
    task_lib.make_train_step(config)(state, batch, jax.random.key(1))


def test_supervised_step_learns_a_pose():
  config = tiny_config()
  config.supervised = True
  config.model.dropout = 0.0
  config.optim.lr = 1e-2
  state = task_lib.init_state(config, jax.random.key(0))
  assert set(state) == {"lifter"}
  truth = _poses_3d(4, batch=8)
  batch = {"pose_2d": np.asarray(lifter_lib.project(truth)), "pose_3d_cam": np.asarray(truth)}
  step = jax.jit(task_lib.make_train_step(config))
  losses = []
  for i in range(30):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0]


POSE_SEQUENCES = {"S1": {"Walking 1": 9, "Eating": 6}, "S5": {"Photo 2": 6},
                  "S9": {"WalkDog": 5}, "S11": {"Sitting 1": 4}}


@pytest.fixture(scope="module")
def npz_config(tmp_path_factory):
  """A tiny config that reads VideoPose3D-format .npz files given by path."""
  from tests import fake_poses
  folder = tmp_path_factory.mktemp("lifter_poses")
  path_3d, path_2d = fake_poses.write_videopose3d_npz(folder / "in", POSE_SEQUENCES)
  config = tiny_config(**{"train.steps": 3, "train.log_every": 1, "train.eval_every": 0,
                          "train.checkpoint_every": 0, "eval.batch_size": 8})
  config.train.progress_bar = False
  config.viz.num_examples = 1
  config.viz.gif_frames = 2
  config.data.data_dir = str(folder / "data")
  config.data.npz_3d, config.data.npz_2d = str(path_3d), str(path_2d)
  return config


def test_training_pipeline_carries_no_3d(npz_config):
  from geopose_jax.train import mesh as mesh_lib
  task = task_lib.build(npz_config, mesh_lib.make_runtime("/nonexistent-unused"))
  batch = next(iter(task.train_data()))
  assert {"pose_2d", "pose_2d_next"} <= set(batch)
  assert not any("3d" in key for key in batch)
  assert not any(np.ndim(v) >= 2 and np.shape(v)[-1] == 3 for v in batch.values())
  lifting.check_batch_keys(batch, task_lib.UNSUPERVISED_KEYS, "self-supervised")


def test_train_then_eval_writes_the_tables_and_pictures(npz_config, tmp_path):
  import json
  from geopose_jax.train import loop
  workdir = tmp_path / "run"
  loop.run(npz_config, workdir, "train")
  results = loop.run(npz_config, workdir, "eval")["test"]
  written = json.loads((workdir / "eval" / "test.json").read_text())
  for key in ("pa_mpjpe", "n_mpjpe", "mpjpe", "pck", "auc", "num_frames", "per_action",
              "per_sequence", "convention", "constant_depth_pa_mpjpe"):
    assert key in written and key in results
  assert written["num_frames"] == 4 * (5 + 4)
  assert set(written["per_action"]) == {"WalkDog", "Sitting"}
  assert 0 < written["pa_mpjpe"] <= written["constant_depth_pa_mpjpe"] * 3
  assert (workdir / "viz" / "lifter_examples.png").stat().st_size > 0
  assert (workdir / "viz" / "lifter_turntable.gif").stat().st_size > 0

  # The 2D domain adapter in front of the trained (frozen) lifter; here the "new domain" is
  # the same files, which is enough to run the adversarial stage end to end. Its lifter
  # settings come from the lifter run, whatever the adapter's config says.
  adapter_config = tiny_config("demo,adapter", **{
      "train.steps": 3, "train.log_every": 1, "train.eval_every": 0,
      "train.checkpoint_every": 0, "eval.batch_size": 8, "adapter.features": 16,
      "adapter.num_blocks": 1})
  adapter_config.train.progress_bar = False
  adapter_config.model.features = 32
  adapter_config.data.data_dir = npz_config.data.data_dir
  adapter_config.data.npz_3d, adapter_config.data.npz_2d = (npz_config.data.npz_3d,
                                                            npz_config.data.npz_2d)
  adapter_config.adapter.source_npz_2d = npz_config.data.npz_2d
  adapter_config.adapter.source_npz_3d = npz_config.data.npz_3d
  adapter_config.init_from = str(workdir)
  assert adapter_config.task == "lifter_adapter"
  adapted = loop.run(adapter_config, tmp_path / "adapter", "train")["test"]
  saved = json.loads((tmp_path / "adapter" / "config.json").read_text())
  assert saved["model"]["features"] == npz_config.model.features == 16
  assert adapted["num_frames"] == written["num_frames"]
  assert np.isfinite(adapted["pa_mpjpe"]) and np.isfinite(adapted["unadapted_pa_mpjpe"])
  wrong = copy.deepcopy(adapter_config)
  wrong.init_from = str(tmp_path / "adapter")      # an adapter run, not a lifter run
  with pytest.raises(InputError, match="is a 'lifter_adapter' run; lifter_adapter accepts"):
    loop.run(wrong, tmp_path / "adapter_wrong", "train")


def test_adapter_step_moves_source_poses_towards_the_training_domain():
  config = tiny_config("demo,adapter", **{"adapter.features": 32, "adapter.num_blocks": 1,
                                          "optim.lr": 3e-3, "disc_optim.lr": 3e-3,
                                          "adapter.identity": 0.0})
  rng = np.random.default_rng(0)
  target = rng.normal(scale=0.2, size=(64, 17, 2)).astype(np.float32)
  source = target.copy()
  source[:, 13] += np.float32(0.6)      # the "detector" puts the left wrist far to the right
  state = adapter_lib.init_adapter_state(config, jax.random.key(0))
  np.testing.assert_allclose(adapter_lib.adapt(config, state["adapter"], source),
                             lifter_lib.normalize_pose_2d(source, C), atol=1e-6)
  train_step = functools.partial(
      adapter_lib.adapter_train_step, models=adapter_lib.make_models(config), depth_offset=C,
      gan=config.loss.gan, gp=config.loss.gp, identity=config.adapter.identity)
  step = jax.jit(train_step)
  with pytest.raises(ValueError, match="may not see 3D"):
    train_step(state, {"pose_2d": target, "source_pose_2d": source,
                       "pose_3d_cam": np.zeros((64, 17, 3))}, jax.random.key(0))

  def wrist_gap(s):
    adapted = lifter_lib.normalize_pose_2d(adapter_lib.adapt(config, s["adapter"], source), C)
    return float(jnp.mean(jnp.abs(adapted[:, 13, 0] - lifter_lib.normalize_pose_2d(
        target, C)[:, 13, 0])))

  before = wrist_gap(state)
  for i in range(60):
    order = rng.permutation(64)   # unpaired: the two domains are shuffled independently
    state, metrics = step(state, {"pose_2d": target, "source_pose_2d": source[order]},
                          jax.random.key(i))
  assert np.isfinite(float(metrics["loss"]))
  assert wrist_gap(state) < 0.7 * before
