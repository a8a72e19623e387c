"""The rie task: schedules, stage-2 freezing, starting points, the evaluation protocol."""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import rie as rie_config
from geopose_jax import metrics
from geopose_jax import skeleton
from geopose_jax.models import rie as rie_lib
from geopose_jax.tasks import rie as task_lib
from geopose_jax.errors import InputError
from geopose_jax.train import init_from as init_from_lib
from geopose_jax.train import mesh as mesh_lib
from geopose_jax.train import optim
from geopose_jax.train.state import TrainState


def test_schedules_follow_the_original():
  config = rie_config.get_config()
  # BatchNorm momentum: 0.1 * exp(-epoch / epochs * ln(0.1 / 0.001)), epoch = completed epochs.
  for step, epoch in [(0, 0), (99, 0), (100, 1), (4_050, 40), (7_999, 79)]:
    expected = 0.1 * math.exp(-epoch / 80 * math.log(0.1 / 0.001))
    got = float(task_lib.bn_momentum(step, 100, 8_000, 0.1, 0.001))
    assert got == pytest.approx(expected, rel=1e-5)
  task_lib.resolve_config(config)
  schedule = optim.learning_rate_schedule(config.optim, 100)
  assert float(schedule(0)) == pytest.approx(1e-3)
  assert float(schedule(250)) == pytest.approx(1e-3 * 0.95 ** 2)
  config = rie_config.get_config()
  config.stage = 3
  task_lib.resolve_config(config)
  assert config.optim.lr == 5e-4 and config.optim.frozen == ()
  config = rie_config.get_config()
  config.stage, config.optim.lr = 3, 2e-4      # an explicit rate is kept
  task_lib.resolve_config(config)
  assert config.optim.lr == 2e-4


def tiny_config(**model):
  config = rie_config.get_config("demo")
  config.model.filter_widths = "3"
  config.model.channels = 8
  config.model.latent_dim = 4
  config.model.fc_hidden = 8
  config.model.update(model)
  config.eval.splits = ("test",)            # the fakes and npz files have no heldout split
  return config


@pytest.mark.parametrize("freeze_batch_stats", [False, True])
def test_stage2_step_leaves_encoders_bit_identical(freeze_batch_stats):
  config = tiny_config()
  config.stage = 2
  config.optim.freeze_batch_stats = freeze_batch_stats
  task_lib.resolve_config(config)
  model = task_lib.make_model(config)
  frozen = task_lib.frozen_modules(config.optim.frozen)
  assert frozen == rie_lib.ENCODER_MODULES
  x = jax.random.uniform(jax.random.key(0), (8, 3, 17, 2), minval=-1, maxval=1)
  y = jax.random.normal(jax.random.key(1), (8, 17, 3)) * 0.2
  # Random values by numpy on the model's shapes (compiling the initialisers costs more).
  shapes = jax.eval_shape(model.init, {"params": jax.random.key(2), "dropout": jax.random.key(3)}, x)
  rng = np.random.default_rng(0)
  variables = {"params": jax.tree.map(
      lambda s: rng.normal(size=s.shape).astype(np.float32) * 0.3, shapes["params"]),
               "batch_stats": jax.tree.map(lambda s: np.ones(s.shape, np.float32),
                                           shapes["batch_stats"])}
  tx = optim.make_optimizer(config.optim, variables["params"], steps_per_epoch=10)
  state = TrainState.create(variables["params"], tx, variables["batch_stats"])
  step = jax.jit(functools.partial(task_lib.train_step, model=model, frozen=frozen,
                                   steps_per_epoch=10, total_steps=100,
                                   optim_config=config.optim))
  new_state, metrics_ = step(state, {"pose_2d": x, "pose_3d": y}, jax.random.key(4))
  assert np.isfinite(float(metrics_["loss"]))
  before, after = variables["params"], jax.device_get(new_state.params)
  for name in rie_lib.ENCODER_MODULES:
    for a, b in zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for name in ("fusion_torso", "decoder_left_arm"):
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name])))
  # The original's behaviour: frozen encoders' BatchNorm statistics still follow the data;
  # freeze_batch_stats keeps them too. The fusion blocks' statistics move either way.
  stats_before, stats_after = variables["batch_stats"], jax.device_get(new_state.batch_stats)
  for name in rie_lib.ENCODER_MODULES:
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stats_before[name]),
                                                   jax.tree.leaves(stats_after[name])))
    assert same == freeze_batch_stats, name
  assert not np.array_equal(stats_before["fusion_torso"]["fc_in_bn"]["mean"],
                            stats_after["fusion_torso"]["fc_in_bn"]["mean"])


def test_stage2_starts_from_the_encoders_only(tmp_path):
  fresh = TrainState.create(
      {"global_encoder": {"w": jnp.zeros(2)}, "decoder_torso": {"w": jnp.zeros(3)}},
      optax.set_to_zero())
  loaded = {"params": {"global_encoder": {"w": np.ones(2)}, "decoder_torso": {"w": np.ones(4)}}}
  config = tiny_config()
  config.stage = 2
  source = init_from_lib.Source(path=tmp_path / "bogus.bin", kind="file")
  original = task_lib.load_original
  try:
    task_lib.load_original = lambda path, config: loaded
    merged = task_lib.start_from(fresh, source=source, config=config)
    np.testing.assert_array_equal(merged.params["global_encoder"]["w"], 1.0)
    np.testing.assert_array_equal(merged.params["decoder_torso"]["w"], 0.0)
    config.stage = 3        # stage 3 takes everything: the mis-shaped decoder is refused
    with pytest.raises(InputError, match="decoder_torso/w is"):
      task_lib.start_from(fresh, source=source, config=config)
  finally:
    task_lib.load_original = original


def fake_sequences(split):
  rng = np.random.default_rng(0 if split == "train" else 1)
  out = []
  for action, length in [("Walking", 11), ("Walking", 5), ("Running", 7)]:
    pose_3d = rng.normal(size=(length, 17, 3)).astype(np.float32) * 0.3
    pose_3d -= pose_3d[:, :1]
    out.append(dict(pose_2d=rng.uniform(-1, 1, (length, 17, 2)).astype(np.float32),
                    pose_3d=pose_3d, subject="S9", action=action, camera=0))
  return out


def fake_table(split):
  sequences = fake_sequences(split)
  lengths = np.array([len(s["pose_2d"]) for s in sequences])
  return types.SimpleNamespace(
      pose_2d=np.concatenate([s["pose_2d"] for s in sequences]),
      pose_3d_cam=np.concatenate([s["pose_3d"] + 2.0 for s in sequences]),   # root not 0
      start=np.concatenate([[0], np.cumsum(lengths)[:-1]]), length=lengths,
      camera=np.zeros(len(sequences), np.int32),
      names=tuple((s["subject"], s["action"], f"{s['action']} {i}", "cam0")
                  for i, s in enumerate(sequences)))


def test_evaluate_is_the_h36m_protocol_with_flip_average(tmp_path, monkeypatch):
  monkeypatch.setattr(task_lib.poses_data, "load_poses", lambda config, split: fake_table(split))
  config = tiny_config(name="tcn", causal=False)
  config.train.batch_size = 8
  config.eval.batch_size = 8
  config.eval.frame_stride = 1
  config.train.progress_bar = False
  task_lib.resolve_config(config)
  task = task_lib.build(config, mesh_lib.make_runtime(tmp_path))
  state = jax.jit(task.init)(jax.random.key(0))
  result = task.evaluate(state, "test")
  assert set(result) >= {"mpjpe", "pa_mpjpe", "mpjve", "accel_error", "num_frames",
                         "per_action", "per_sequence", "convention"}
  assert result["num_frames"] == 23
  assert len(result["per_sequence"]) == 3

  # Independent computation: windows by a loop with edge padding, explicit flip average.
  model = task_lib.make_model(config)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  p1, p2, actions = [], [], []
  for seq in fake_sequences("test"):
    n = len(seq["pose_2d"])
    windows = np.stack([seq["pose_2d"][[min(max(f + d, 0), n - 1) for d in (-1, 0, 1)]]
                        for f in range(n)])
    plain = np.asarray(model.apply(variables, windows))[:, 0]
    flipped = np.asarray(model.apply(variables, np.asarray(skeleton.flip_pose(windows))))[:, 0]
    pred = 0.5 * (plain + np.asarray(skeleton.flip_pose(flipped)))
    p1.append(np.linalg.norm(pred - seq["pose_3d"], axis=-1).mean(-1) * 1000)
    p2.append(np.asarray(metrics.pa_mpjpe(pred, seq["pose_3d"])) * 1000)
    actions += [seq["action"]] * n
  p1, p2, actions = np.concatenate(p1), np.concatenate(p2), np.array(actions)
  walking, running = actions == "Walking", actions == "Running"
  assert result["per_action"]["Walking"]["num_frames"] == 16
  assert result["per_action"]["Walking"]["mpjpe"] == pytest.approx(p1[walking].mean(), abs=0.06)
  assert result["mpjpe"] == pytest.approx((p1[walking].mean() + p1[running].mean()) / 2, abs=0.06)
  assert result["pa_mpjpe"] == pytest.approx((p2[walking].mean() + p2[running].mean()) / 2,
                                             abs=0.06)


def test_stage2_needs_a_starting_point(tmp_path):
  config = tiny_config()
  config.stage = 2
  with pytest.raises(ValueError, match="init_from"):
    task_lib.build(config, mesh_lib.make_runtime(tmp_path))


def test_sequence_gif(tmp_path):
  from PIL import Image
  from geopose_jax.viz import rie as viz_lib
  rng = np.random.default_rng(0)
  pose_2d = rng.uniform(-0.5, 0.5, (3, 17, 2))
  pose_3d = rng.normal(size=(3, 17, 3)) * 0.3
  path = viz_lib.write_sequence_gif(tmp_path / "seq.gif", pose_2d, pose_3d, pose_3d + 0.01)
  with Image.open(path) as gif:
    assert gif.n_frames == 3 and gif.size == (512, 256)
  with pytest.raises(ValueError, match="lengths differ"):
    viz_lib.write_sequence_gif(tmp_path / "bad.gif", pose_2d, pose_3d[:2])
  assert not (tmp_path / "bad.gif").exists()


def test_eval_of_a_test_only_file_never_opens_the_train_split(tmp_path, four_devices):
  """Train on a full file, then evaluate the checkpoint on a file holding only test subjects
  (a user's own held-out data): evaluation must not ask for a training split."""
  import fake_poses
  from geopose_jax.train import loop
  full = fake_poses.write_videopose3d_npz(tmp_path / "full", {"S1": {"Walking 1": 12},
                                                              "S9": {"Walking 1": 9}})
  test_only = fake_poses.write_videopose3d_npz(tmp_path / "test_only",
                                               {"S11": {"Walking 1": 10}}, seed=3)
  config = tiny_config()
  config.data.builder_config = "npz"
  config.data.data_dir = str(tmp_path / "data")
  config.data.npz_3d, config.data.npz_2d = (str(p) for p in full)
  config.train.batch_size, config.eval.batch_size = 8, 8
  config.train.steps, config.train.checkpoint_every = 0, 0   # a checkpoint is all it needs
  config.train.progress_bar = False
  config.viz.action = "no such action"                        # no picture
  config.eval.frame_stride = 1
  loop.run(config, tmp_path / "run")
  config.data.npz_3d, config.data.npz_2d = (str(p) for p in test_only)
  config.data.data_dir = str(tmp_path / "data_test_only")
  result = loop.run(config, tmp_path / "run", "eval")["test"]
  assert result["num_frames"] == 4 * 10          # S11's 10 frames in each of 4 cameras
  assert list(result["per_sequence"]) and all(k.startswith("S11") for k in result["per_sequence"])
