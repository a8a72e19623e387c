"""NVS pose head: pose normalisation, frozen parts, and stage 1 -> stage 2 -> eval end to end."""

import functools
import json

import jax
import numpy as np
import pytest

from configs import nvs as nvs_config
from configs import nvs_pose as nvs_pose_config
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.tasks import nvs_pose
from geopose_jax.train import checkpoint
from geopose_jax.train import loop
from geopose_jax.train import optim
from geopose_jax.errors import InputError
import fake_poses  # tests/ is on sys.path under pytest

TINY_NET = fake_poses.TINY_NVS_NET


def test_pose_statistics_and_normalisation_round_trip():
  rng = np.random.default_rng(0)
  poses = rng.normal(size=(50, 17, 3)) * 200 + rng.normal(size=(50, 1, 3)) * 1000
  mean, std = nvs_pose.pose_statistics(poses)
  relative = poses - poses[:, :1]
  np.testing.assert_allclose(mean, relative.mean(0), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(std[1:], relative.std(0)[1:], rtol=1e-4)
  np.testing.assert_array_equal(std[0], [1.0, 1.0, 1.0])  # the root's std is 1
  target = np.asarray(nvs_pose.normalize_pose(poses, mean, std))
  assert target.shape == (50, 51)
  np.testing.assert_allclose(target.reshape(50, 17, 3)[:, 1:].std(0), 1.0, rtol=1e-3)
  back = np.asarray(nvs_pose.denormalize_pose(target, mean, std))
  np.testing.assert_allclose(back, relative, atol=1e-2)


def test_frozen_parts_semi_supervised_vs_supervised():
  config = nvs_pose_config.get_config("demo")
  config.model.net.update(TINY_NET)
  model = synthesis.build_model(config.model.net)
  params = {"nvs": synthesis.abstract_variables(model, 16)["params"],
            "head": {"0": {"kernel": np.zeros((24, 8))}}}
  labels = optim.frozen_labels(params, nvs_pose.method_frozen(config))
  assert set(jax.tree.leaves(labels["nvs"])) == {"frozen"}
  assert set(jax.tree.leaves(labels["head"])) == {"trained"}
  config.model.supervised = True
  labels = optim.frozen_labels(params, nvs_pose.method_frozen(config))
  assert set(jax.tree.leaves(labels["nvs"]["encoder"])) == {"trained"}
  assert set(jax.tree.leaves(labels["nvs"]["from_latent"])) == {"frozen"}
  assert set(jax.tree.leaves(labels["nvs"]["final_stage0"])) == {"frozen"}
  # resolve_config writes them into optim.frozen once, after the user's own patterns.
  config.optim.frozen = ("head/0/.*",)
  with config.unlocked():
    nvs_pose.resolve_config(config)
    nvs_pose.resolve_config(config)
  assert config.optim.frozen == ("head/0/.*",) + nvs_pose.method_frozen(config)


def test_train_step_fits_the_normalised_pose_with_the_encoder_frozen():
  config = nvs_pose_config.get_config("demo")
  config.model.net.update(TINY_NET)
  config.model.head_hidden = 16
  config.model.head_dropout = 0.0
  config.optim.lr = 1e-2
  config.optim.frozen = nvs_pose.method_frozen(config)
  model = synthesis.build_model(config.model.net)
  head = nvs_pose.build_head(config)
  state = nvs_pose.init(jax.random.key(0), model=model, head=head, image_size=16,
                        optim_config=config.optim)
  rng = np.random.default_rng(0)
  poses = rng.normal(size=(8, 17, 3)).astype(np.float32) * 100
  mean, std = nvs_pose.pose_statistics(poses)
  state = nvs_pose.put_statistics(state, mean, std)
  predict_fn = functools.partial(nvs_pose.predict, model=model, head=head, image_size=16,
                                 supervised=False, encoder_bn_train_mode=False)
  step = jax.jit(functools.partial(nvs_pose.train_step, predict_fn=predict_fn))
  batch = {"image": rng.integers(0, 256, (8, 16, 16, 3)).astype(np.uint8), "pose_3d_cam": poses}
  before = jax.tree.map(np.asarray, state.params["nvs"])
  # The loss is the MSE of the normalised root-relative targets, computed here by hand.
  output, _ = predict_fn(state.params, state.batch_stats, batch["image"], True,
                         jax.random.key(1))
  target = ((poses - poses[:, :1] - mean) / std).reshape(8, -1)
  expected = np.mean((np.asarray(output) - target) ** 2)
  state, first = step(state, batch, jax.random.key(1))
  np.testing.assert_allclose(float(first["loss"]), expected, rtol=1e-4)
  # 60 steps: at 30 the loss is near half its start (0.53-0.50 of it, by the float rounding of
  # the machine), at 60 about 0.36 of it.
  for i in range(60):
    state, last = step(state, batch, jax.random.key(2 + i))
  assert float(last["loss"]) < 0.5 * float(first["loss"])
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(state.params["nvs"])):
    np.testing.assert_array_equal(old, np.asarray(new))     # frozen, bit for bit
  np.testing.assert_array_equal(state.batch_stats["pose_targets"]["mean"], mean)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("multiview")
  return str(folder), fake_poses.build_fake_multiview(folder)


def _common(config, data_dir, name, steps):
  config = fake_poses.tiny_multiview_run(config, data_dir, name, steps, batch_size=16)
  config.viz.sweeps = 1
  config.viz.sweep_angles = 3
  return config


def test_stage1_lowers_the_loss_then_pose_head_then_eval(data_dir, tmp_path):
  folder, name = data_dir
  stage1 = _common(nvs_config.get_config("demo"), folder, name, steps=24)
  stage1.optim.lr = 1e-2
  stage1.viz.num_examples = 1
  stage1.viz.sweep_angles = 4  # The same batch as the 4 views: one compiled synthesizer.
  loop.run(stage1, tmp_path / "nvs")
  logged = [json.loads(line) for line in (tmp_path / "nvs" / "metrics.jsonl").open()]
  losses = [m["train/loss"] for m in logged if "train/loss" in m]
  assert len(losses) == 24 and np.isfinite(losses).all()
  assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
  assert "l1" in json.loads((tmp_path / "nvs" / "eval" / "test.json").read_text())
  assert list((tmp_path / "nvs" / "viz").glob("sweep0_*.gif"))

  pose = _common(nvs_pose_config.get_config("demo"), folder, name, steps=3)
  pose.model.head_hidden = 16
  pose.viz.num_examples = 0  # Stage 1 above drew through the same code.
  pose.data.label_subjects = ("S1",)
  pose.init_from = str(tmp_path / "nvs")
  loop.run(pose, tmp_path / "pose")
  # --mode=eval never opens the train split: a train selection that cannot be met is unread.
  pose.data.train_subjects = ("S7",)
  results = loop.run(pose, tmp_path / "pose", mode="eval")["test"]
  written = json.loads((tmp_path / "pose" / "eval" / "test.json").read_text())
  for key in ("mpjpe", "n_mpjpe", "n_mpjpe_rhodin", "pa_mpjpe", "num_frames", "per_action",
              "per_sequence", "convention"):
    assert key in written
  assert written["mpjpe"] == results["mpjpe"] and written["mpjpe"] > 0
  # Both test sequences' actions are reported (fake_multiview: Walking, Running).
  assert set(written["per_action"]) == {"Walking", "Running"}
  # The encoder is frozen: stage 2's checkpoint holds stage 1's encoder unchanged.
  before, _ = checkpoint.load_state_dict(tmp_path / "nvs")
  after, step = checkpoint.load_state_dict(tmp_path / "pose")
  assert step == 3
  np.testing.assert_array_equal(after["params"]["nvs"]["encoder"]["fc"]["kernel"],
                                before["params"]["encoder"]["fc"]["kernel"])
  np.testing.assert_array_equal(after["batch_stats"]["nvs"]["encoder"]["bn1"]["mean"],
                                before["batch_stats"]["encoder"]["bn1"]["mean"])


def test_pose_task_needs_a_stage1_run(data_dir, tmp_path):
  folder, name = data_dir
  pose = _common(nvs_pose_config.get_config("demo"), folder, name, steps=1)
  with pytest.raises(ValueError, match="init_from"):
    loop.run(pose, tmp_path / "pose")
  pose.init_from = str(tmp_path / "missing")
  with pytest.raises(InputError, match="missing: no such file"):
    loop.run(pose, tmp_path / "pose")
