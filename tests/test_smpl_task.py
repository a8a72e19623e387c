"""SMPL task: geometry helpers, and SMPL regression on an NVS run with a prior -> eval."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import nvs as nvs_config
from configs import smpl as smpl_config
from configs import smpl_prior as prior_config
from geopose_jax.body import placement
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.tasks import smpl as smpl_task
from geopose_jax.tasks import smpl_prior
from geopose_jax.train import checkpoint
from geopose_jax.train import loop
import fake_poses  # tests/ is on sys.path under pytest

TINY_NET = fake_poses.TINY_NVS_NET


def test_body_goes_into_the_camera_frame_on_the_ground_truth_root():
  rng = np.random.default_rng(0)
  joints = jnp.asarray(rng.normal(size=(2, 24, 3)), jnp.float32)
  vertices = jnp.asarray(rng.normal(size=(2, 50, 3)), jnp.float32)
  root = jnp.asarray([[10.0, 20.0, 3000.0], [-5.0, 0.0, 4000.0]])
  v_cam, j_cam = placement.body_in_camera(vertices, joints, root)
  np.testing.assert_allclose(j_cam[:, 0], root, atol=1e-3)
  # A proper half turn about x, metres -> mm: up (+y) becomes image-down (-y), depth flips.
  np.testing.assert_allclose(j_cam[:, 1] - j_cam[:, 0],
                             (joints[:, 1] - joints[:, 0]) * jnp.asarray([1e3, -1e3, -1e3]),
                             rtol=1e-5, atol=1e-3)
  assert float(jnp.linalg.det(jnp.asarray(placement.Y_UP_TO_CAMERA))) == 1.0


def test_pooled_masks_and_scaled_intrinsics_agree():
  masks = np.zeros((1, 16, 16), np.uint8)
  masks[0, 4:6, 6:8] = 1                      # a 2x2 block centred at (x, y) = (6.5, 4.5)
  pooled = np.asarray(placement.pool_masks(jnp.asarray(masks), 8))
  assert pooled[0, 2, 3] == 1.0 and pooled.sum() == 1.0
  K = jnp.asarray([[20.0, 0.0, 7.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]])
  point = jnp.asarray([-0.5 / 20.0, -3.5 / 20.0, 1.0])     # projects to (6.5, 4.5)
  full, half = K @ point, placement.scale_intrinsics(K, 0.5) @ point
  np.testing.assert_allclose(full[:2], [6.5, 4.5], atol=1e-5)
  np.testing.assert_allclose(half[:2], [3.0, 2.0], atol=1e-5)   # the pooled pixel's centre


def test_select_view_matches_indexing():
  x = jnp.arange(3 * 4 * 2).reshape(3, 4, 2)
  view = jnp.asarray([2, 0, 3])
  np.testing.assert_array_equal(smpl_task.select_view(x, view), x[jnp.arange(3), view])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Tiny data, an NVS run's and a prior run's workdirs (initial weights, saved as the
  training loop saves them)."""
  root = tmp_path_factory.mktemp("smpl_runs")
  name = fake_poses.build_fake_multiview(root / "data")
  nvs_cfg = _common(nvs_config.get_config("demo"), str(root / "data"), name, steps=1)
  model = synthesis.build_model(nvs_cfg.model.net)
  variables = jax.jit(lambda key: synthesis.init_variables(model, 16, key))(jax.random.key(0))
  fake_poses.save_finished_run(root / "nvs", nvs_cfg, {"params": variables["params"],
                                                       "batch_stats": variables["batch_stats"]})
  prior_cfg = prior_config.get_config("demo")
  prior_cfg.model.disc_features, prior_cfg.model.generator_hidden = 16, 8
  prior_state = jax.jit(lambda key: smpl_prior.init_state(prior_cfg, key))(jax.random.key(1))
  fake_poses.save_finished_run(root / "prior", prior_cfg, prior_state)
  return root, name


def _common(config, data_dir, name, steps):
  config = fake_poses.tiny_multiview_run(config, data_dir, name, steps, batch_size=8)
  return config


def test_regressor_trains_evaluates_and_keeps_the_encoder_frozen(runs):
  root, name = runs
  config = _common(smpl_config.get_config("demo"), str(root / "data"), name, steps=3)
  config.init_from, config.prior_from = str(root / "nvs"), str(root / "prior")
  config.model.width = 16
  config.body.detail = 0.3
  config.loss.silhouette_start = 1            # steps 2 and 3 render silhouettes
  config.loss.silhouette_size = 8
  config.viz.num_examples = 0                 # pictures: see the demo
  loop.run(config, root / "smpl")
  written = json.loads((root / "smpl" / "eval" / "test.json").read_text())
  assert {"mpjpe", "pa_mpjpe", "silhouette_iou", "silhouette_iou_view3"} <= set(written)
  assert written["mpjpe"] > 0 and 0.0 <= written["silhouette_iou"] <= 1.0
  assert written["convention"]["joints"] == "SMPL-H36M-14"
  # Every view of every test sample is an input; each view's IoU over its own frames.
  assert written["num_frames"] % 4 == 0
  ious = [written[f"silhouette_iou_view{v}"] for v in range(4)]
  assert min(ious) <= written["silhouette_iou"] <= max(ious)
  log = [json.loads(line) for line in (root / "smpl" / "metrics.jsonl").read_text().splitlines()]
  bce = [m["train/silhouette_bce"] for m in log if "train/silhouette_bce" in m]
  assert bce[0] == 0.0 and bce[-1] > 0.0      # silhouettes switched on after the start step
  assert all(np.isfinite(m["train/prior_bce"]) for m in log if "train/prior_bce" in m)
  before, _ = checkpoint.load_state_dict(root / "nvs")
  after, step = checkpoint.load_state_dict(root / "smpl")
  assert step == 3
  np.testing.assert_array_equal(after["nvs"]["params"]["encoder"]["fc"]["kernel"],
                                before["params"]["encoder"]["fc"]["kernel"])


def test_regressor_needs_an_nvs_run(runs):
  root, name = runs
  config = _common(smpl_config.get_config("demo"), str(root / "data"), name, steps=1)
  with pytest.raises(ValueError, match="init_from"):
    loop.run(config, root / "no_nvs")
  config.init_from, config.prior_from = str(root / "nvs"), str(root / "nvs")
  with pytest.raises(ValueError, match="prior_from=.* is a 'nvs' run"):
    loop.run(config, root / "wrong_prior")
