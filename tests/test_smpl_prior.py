"""SMPL prior: SURREAL parameters, mirrored CMU parameters, the GAN step (the CMU mapping
and the smpl_params/cmu build: test_smpl_params.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from configs import smpl_prior as prior_config
from data_prep import smpl_params
from data_prep.smpl_params import cmu, surreal
from geopose_jax import skeleton
from geopose_jax.body import procedural
from geopose_jax.tasks import smpl_prior
import fake_poses  # tests/ is on sys.path under pytest



def write_info(path, num_frames, seed):
  rng = np.random.default_rng(seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  pose = rng.normal(size=(72, num_frames)) * 0.3
  shape = np.repeat(rng.normal(size=(10, 1)), num_frames, axis=1).astype(np.float32)
  scipy.io.savemat(path, {"pose": pose, "shape": shape, "gender": np.array([0]),
                          "zrot": np.array([0.3])})
  return pose.T, shape.T


def test_surreal_builder_reads_info_files_and_splits(tmp_path):
  manual = tmp_path / "manual"
  train_pose, train_shape = write_info(manual / "cmu/train/run0/01_01/01_01_c0001_info.mat", 25, 0)
  test_pose, _ = write_info(manual / "cmu/test/run1/02_02/02_02_c0002_info.mat", 12, 1)
  builder = smpl_params.ensure_built("smpl_params/surreal", tmp_path / "data",
                                     manual_dir=manual)
  assert set(builder.info.splits) == {"train", "test"}
  train = smpl_params.load_split(builder, "train")
  order = np.argsort([np.abs(t).sum() for t in train["theta"]])       # records are shuffled
  want = train_pose[::10]                                              # frame_step 10
  assert train["theta"].shape == (3, 72)
  np.testing.assert_allclose(np.sort(np.abs(want).sum(1)), np.abs(train["theta"][order]).sum(1),
                             rtol=1e-5)
  np.testing.assert_allclose(train["beta"], np.repeat(train_shape[:1], 3, 0), rtol=1e-6)
  assert smpl_params.load_split(builder, "test")["theta"].shape == (len(test_pose[::10]), 72)


def test_surreal_errors_name_the_file(tmp_path):
  path = tmp_path / "x_c0001_info.mat"
  scipy.io.savemat(path, {"shape": np.zeros((10, 3))})
  with pytest.raises(ValueError, match="x_c0001_info.mat.*'pose'"):
    surreal.read_info(path)
  with pytest.raises(FileNotFoundError, match="no SURREAL"):
    surreal.find_info_files(tmp_path / "empty")


def test_mirrored_parameters_give_the_mirror_image():
  rest, _ = procedural.rest_skeleton()                 # left-right symmetric
  theta = np.random.default_rng(0).normal(size=72) * 0.5
  mirrored = fake_poses.smpl_forward_kinematics(cmu.mirror_axis_angle(theta), rest)
  want = fake_poses.smpl_forward_kinematics(theta, rest)[list(skeleton.SMPL_FLIP_PERMUTATION)] * [-1, 1, 1]
  np.testing.assert_allclose(mirrored, want, atol=1e-9)
  np.testing.assert_allclose(cmu.mirror_axis_angle(cmu.mirror_axis_angle(theta)), theta)


def test_ranking_auc_matches_pair_counting():
  rng = np.random.default_rng(1)
  pos, neg = rng.normal(size=30) + 0.5, rng.normal(size=40)
  brute = np.mean(pos[:, None] > neg[None, :])
  assert smpl_prior.ranking_auc(pos, neg) == pytest.approx(brute)


def test_gan_step_learns_to_tell_real_from_generated():
  config = prior_config.get_config("demo")
  config.model.disc_features = 32
  config.model.generator_hidden = 16
  state = smpl_prior.init_state(config, jax.random.key(0))
  step = jax.jit(smpl_prior.make_train_step(config))
  rng = np.random.default_rng(0)
  # "Real" data: a narrow pose distribution the untrained generator does not produce.
  batch = {"theta": jnp.asarray(0.05 * rng.normal(size=(32, 72)) + 0.8, jnp.float32),
           "beta": jnp.asarray(rng.normal(size=(32, 10)), jnp.float32)}
  for i in range(15):
    state, metrics = step(state, batch, jax.random.key(i))
  assert np.isfinite(float(metrics["loss"]))
  assert float(metrics["d_real_accuracy"]) > 0.9 and float(metrics["d_fake_accuracy"]) > 0.9


def test_global_orientation_is_judged_only_in_the_original_variant():
  for variant, judged in (("demo", False), ("demo,original", True)):
    config = prior_config.get_config(variant)
    generator, _ = smpl_prior.build_models(config)
    params = generator.init(jax.random.key(0), jnp.zeros((1, 20)))
    theta, beta = generator.apply(params, jnp.ones((2, 20)))
    assert theta.shape == (2, 24, 3) and beta.shape == (2, 10)
    assert bool(jnp.any(theta[:, 0] != 0)) == judged
    rotations = jnp.broadcast_to(jnp.eye(3), (2, 24, 3, 3)).at[:, 0].set(-jnp.eye(3))
    features = smpl_prior.prior_lib.prior_features(rotations, jnp.zeros((2, 10)), judged)
    assert features.shape == (2, smpl_prior.prior_lib.feature_size(10, judged))
    assert bool(jnp.any(features < 0)) == judged    # the root's rotation is in, or not
