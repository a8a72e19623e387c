"""`--mode=predict` end to end: tiny trained runs lift the shipped example and a built test
split (whose metrics, through the evaluator, are those of `--mode=eval`); bad requests stop
with one error and leave no output folder."""

import copy
import json
import pathlib

import numpy as np
import pytest

from configs import lifter as lifter_config
from configs import rie as rie_config
from geopose_jax import evaluation
from geopose_jax.errors import ConfigError, InputError
from geopose_jax.geometry import cameras
from geopose_jax.data import poses as poses_data
from geopose_jax import lifter_inference
from geopose_jax.train import loop
from geopose_jax.train import prediction

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "synthetic_S9_coco17.json"
EXAMPLE_FRAMES = len(json.loads(EXAMPLE.read_text())["images"])   # one image per frame
SEQUENCES = {"S1": {"Walking 1": 9, "Eating": 6}, "S5": {"Photo 2": 6},
             "S9": {"WalkDog": 5, "Dance": 4}, "S11": {"Sitting 1": 4}}


def _quiet(config, steps=2):
  config.train.steps = steps
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.checkpoint_every = 0
  config.train.progress_bar = False
  config.eval.batch_size = 8
  return config


def _with_data(config, folder):
  config.data.data_dir = str(folder / "data")
  config.data.npz_3d, config.data.npz_2d = str(folder / "in" / "data_3d_h36m.npz"), str(
      folder / "in" / "data_2d_h36m_gt.npz")
  return config


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
  from tests import fake_poses
  folder = tmp_path_factory.mktemp("predict_poses")
  fake_poses.write_videopose3d_npz(folder / "in", SEQUENCES)
  return folder


def tiny_lifter(data_folder):
  config = lifter_config.get_config("demo")
  config.model.features, config.model.num_blocks = 16, 1
  config.disc.features, config.disc.num_blocks = 16, 1
  config.train.batch_size = 8
  config.viz.num_examples, config.viz.gif_frames = 1, 2
  return _with_data(_quiet(config), data_folder)


def tiny_rie(data_folder):
  config = rie_config.get_config("demo")
  config.model.filter_widths = "3,3"
  config.model.channels, config.model.latent_dim, config.model.fc_hidden = 8, 4, 8
  config.train.batch_size = 8
  config.optim.steps_per_epoch = 2
  config.data.builder_config = ""
  config.eval.splits = ("test",)            # npz files have no heldout split
  config.viz.subject, config.viz.action, config.viz.max_frames = "S9", "WalkDog", 2
  config.eval.frame_stride = 1
  # Step 0: the loop saves the initialised weights and evaluates them (as when importing an
  # original checkpoint); prediction does not depend on what the weights are.
  return _with_data(_quiet(config, steps=0), data_folder)


@pytest.fixture(scope="module")
def lifter_run(data_folder):
  config = tiny_lifter(data_folder)
  workdir = data_folder / "lifter_run"
  loop.run(config, workdir, "train")
  return config, workdir


@pytest.fixture(scope="module")
def rie_run(data_folder):
  config = tiny_rie(data_folder)
  workdir = data_folder / "rie_run"
  loop.run(config, workdir, "train")
  return config, workdir


def _predict(config, workdir, source, out, **predict):
  config = copy.deepcopy(config)
  config.predict.input, config.predict.output = str(source), str(out)
  config.predict.update(predict)
  return loop.run(config, workdir, "predict")


def test_lifter_lifts_the_shipped_example(lifter_run, tmp_path):
  config, workdir = lifter_run
  out = tmp_path / "out"
  folders = _predict(config, workdir, EXAMPLE, out, gif=False)
  folder = out / "synthetic_S9_coco17"
  assert folders == {"synthetic_S9_coco17": str(folder)}
  for name in ("poses_3d.npz", "poses_3d.json", "motion.bvh", "render.mp4"):
    assert (folder / name).stat().st_size > 0, name
  assert not (folder / "render.gif").exists()
  with np.load(folder / "poses_3d.npz") as npz:
    poses, frames = npz["poses_3d_mm"], npz["frames"]
    metadata = json.loads(str(npz["metadata"]))
  assert poses.shape == (EXAMPLE_FRAMES, 17, 3) and np.isfinite(poses).all()
  np.testing.assert_array_equal(frames, np.arange(EXAMPLE_FRAMES))
  # Root at the origin, each frame sized to the body scale the JSON names.
  np.testing.assert_allclose(poses[:, 0], 0.0, atol=1e-3)
  mean_radius = np.linalg.norm(poses[:, 1:], axis=-1).sum(-1) / 16
  np.testing.assert_allclose(mean_radius, config.eval.body_scale_mm, rtol=1e-4)
  doc = json.loads((folder / "poses_3d.json").read_text())
  assert doc["metadata"] == metadata
  assert "437 mm" in metadata["scale"] and "origin" in metadata["root"]
  assert metadata["task"] == "lifter" and metadata["weights"].endswith("checkpoints/2")
  assert metadata["source_layout"] == "coco17" and metadata["image_size"] == [1000, 1002]
  assert not list(tmp_path.glob(".out.*"))          # the staging folder is gone

  # A workdir without a checkpoint predicts with --config.init_from's weights: the same poses.
  config = copy.deepcopy(config)
  config.init_from = str(workdir)
  again = tmp_path / "again"
  _predict(config, tmp_path / "fresh_run", EXAMPLE, again, video=False, gif=False)
  with np.load(again / "synthetic_S9_coco17" / "poses_3d.npz") as npz:
    np.testing.assert_allclose(npz["poses_3d_mm"], poses, atol=1e-3)
    assert json.loads(str(npz["metadata"]))["weights"] == str(workdir)


def _split_as_keypoint_file(config, path: pathlib.Path) -> pathlib.Path:
  """The test split as one VideoPose3D custom file, a video per (subject, sequence, camera)
  in H36M-17 pixels, as a user would hand it over (pixels undone from the table's
  normalised coordinates)."""
  table = poses_data.load_poses(config.data, "test")
  positions, videos = {}, {}
  for s, (subject, _, _, _) in enumerate(table.names):
    w, h = (int(v) for v in np.asarray(cameras.load_h36m_cameras(subject)[
        int(table.camera[s])].res))
    x = table.pose_2d[table.start[s]:table.start[s] + table.length[s]].astype(np.float64)
    pixels = np.stack([(x[..., 0] + 1) * w / 2, (x[..., 1] + h / w) * w / 2], -1)
    positions[f"seq{s}"] = {"custom": [pixels.astype(np.float32)]}
    videos[f"seq{s}"] = {"w": w, "h": h}
  metadata = {"layout_name": "h36m", "num_joints": 17, "video_metadata": videos}
  np.savez(path, positions_2d=positions, metadata=metadata)
  return path


def _metrics_of_predictions(config, out_folders, convention, rie=False):
  table = poses_data.load_poses(config.data, "test")
  errors, codes = {}, []
  for s in range(len(table.names)):
    with np.load(pathlib.Path(out_folders[s]) / "poses_3d.npz") as npz:
      pred = npz["poses_3d_mm"].astype(np.float64)
    target = table.pose_3d_cam[table.start[s]:table.start[s] + table.length[s]] * 1000.0
    if rie:
      target = target - target[:, :1]
    per_frame = evaluation.frame_errors(pred, target, convention)
    if rie:
      per_frame.update(evaluation.sequence_errors(pred, target))
    for k, v in per_frame.items():
      errors.setdefault(k, []).append(v)
    codes.append(np.full(len(pred), s))
  return evaluation.summarize({k: np.concatenate(v) for k, v in errors.items()},
                              np.concatenate(codes),
                              evaluation.SequenceInfo.from_names(table.names), convention)


@pytest.mark.parametrize("task", ["lifter", "rie"])
def test_predicting_the_test_split_gives_the_eval_metrics(task, lifter_run, rie_run, tmp_path):
  config, workdir = lifter_run if task == "lifter" else rie_run
  expected = loop.run(copy.deepcopy(config), workdir, "eval")["test"]
  path = _split_as_keypoint_file(config, tmp_path / "split.npz")
  written = _predict(config, workdir, path, tmp_path / "out", video=False, gif=False)
  folders = [written[f"seq{s}"] for s in range(len(written))]
  convention = (lifter_inference.EVAL_CONVENTION if task == "lifter"
                else evaluation.Convention(root="target"))
  got = _metrics_of_predictions(config, folders, convention, rie=task == "rie")
  keys = ["mpjpe", "n_mpjpe", "pa_mpjpe", "pck", "auc"] + (
      ["mpjve", "accel_error"] if task == "rie" else [])
  for key in keys:
    assert got[key] == pytest.approx(expected[key], abs=0.11), key
  # A free sequence name ('Dance') is evaluated as its own row, Human3.6M names by action.
  assert set(expected["per_action"]) == {"WalkDog", "Sitting", "Dance"}
  assert set(got["per_action"]) == set(expected["per_action"])
  for action, entry in expected["per_action"].items():
    assert got["per_action"][action]["mpjpe"] == pytest.approx(entry["mpjpe"], abs=0.11)
    assert got["per_action"][action]["num_frames"] == entry["num_frames"]


def test_rie_lifts_the_shipped_example_in_chunks(rie_run, tmp_path, monkeypatch):
  config, workdir = rie_run
  calls = []
  original = prediction.predict_in_chunks

  def counting(predict_batch, num_items, make_batch, **kwargs):
    def counted(frames):
      batch = make_batch(frames)
      calls.append(batch.shape)
      return batch
    return original(predict_batch, num_items, counted, **kwargs)

  monkeypatch.setattr(prediction, "predict_in_chunks", counting)
  out = tmp_path / "out"
  _predict(config, workdir, EXAMPLE, out, video=False, gif=True)
  folder = out / "synthetic_S9_coco17"
  assert (folder / "render.gif").stat().st_size > 0
  assert (folder / "motion.bvh").stat().st_size > 0
  # The example's frames in windows of 9, 8 at a time: batches of at most 8 windows.
  assert len(calls) == -(-EXAMPLE_FRAMES // 8) and all(
      shape[1:] == (9, 17, 2) and shape[0] <= 8 for shape in calls)
  doc = json.loads((folder / "poses_3d.json").read_text())
  assert doc["metadata"]["task"] == "rie" and "RIE stage 1" in doc["metadata"]["model"]
  assert "metric" in doc["metadata"]["scale"]
  assert np.asarray(doc["poses_3d_mm"]).shape == (EXAMPLE_FRAMES, 17, 3)


def test_chunks_match_one_batch_and_pad_the_last():
  data = np.arange(22, dtype=np.float32).reshape(11, 2)
  shapes = []

  def predict_batch(batch):
    shapes.append(batch.shape[0])
    return batch * 2

  got = prediction.predict_in_chunks(predict_batch, 11, lambda i: data[i], batch_size=4,
                                     num_devices=2)
  np.testing.assert_array_equal(got, data * 2)
  assert shapes == [4, 4, 4]            # 3 left, padded to the device multiple (4)
  with pytest.raises(ConfigError, match="multiple"):
    prediction.predict_in_chunks(predict_batch, 11, lambda i: data[i], batch_size=3,
                                 num_devices=2)


# --------------------------------------------------------------------------- bad requests
def _bad_keypoints(tmp_path, kind):
  path = tmp_path / f"{kind}.npz"
  if kind == "nan":
    np.savez(path, keypoints=np.full((5, 17, 2), np.nan), width=100, height=100)
  elif kind == "zero_frames":
    np.savez(path, keypoints=np.zeros((0, 17, 2)), width=100, height=100)
  elif kind == "wrong_joints":
    np.savez(path, keypoints=np.ones((5, 16, 2)), width=100, height=100)
  elif kind == "unknown_format":
    path = tmp_path / "keypoints.txt"
    path.write_text("1 2 3")
  return path


@pytest.mark.parametrize("kind,match", [
    ("nan", "NaN or zero"), ("zero_frames", "has no frames"),
    ("wrong_joints", r"expects \(N, 17, 2\)"), ("unknown_format", "unknown keypoint format")])
def test_bad_keypoints_stop_with_one_line_and_no_output(lifter_run, tmp_path, kind, match):
  config, workdir = lifter_run
  out = tmp_path / "out"
  with pytest.raises(InputError, match=match) as error:
    _predict(config, workdir, _bad_keypoints(tmp_path, kind), out)
  assert "\n" not in str(error.value)
  assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_another_tasks_checkpoint_stops_before_anything_is_written(lifter_run, rie_run,
                                                                    tmp_path):
  lifter_cfg, lifter_workdir = lifter_run
  rie_cfg, _ = rie_run
  out = tmp_path / "out"
  with pytest.raises(InputError, match="holds a 'lifter' run, not a 'rie' one"):
    _predict(rie_cfg, lifter_workdir, EXAMPLE, out)
  assert not out.exists()
  # The same task with other model sizes: the leaves that differ, and the checkpoint stays.
  wider = copy.deepcopy(lifter_cfg)
  wider.model.features = 32
  with pytest.raises(InputError, match="do not fit this model") as error:
    _predict(wider, lifter_workdir, EXAMPLE, out)
  assert "\n" not in str(error.value) and not out.exists()
  assert (lifter_workdir / "checkpoints" / "2").is_dir()
  assert not (lifter_workdir / "checkpoints_corrupt").exists()


def test_requests_that_cannot_run(lifter_run, tmp_path):
  config, workdir = lifter_run
  with pytest.raises(ConfigError, match="predict.input"):
    _predict(config, workdir, "", tmp_path / "out")
  with pytest.raises(ConfigError, match="predict.output"):
    _predict(config, workdir, EXAMPLE, "")
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "file").write_text("x")
  with pytest.raises(InputError, match="not an empty folder"):
    _predict(config, workdir, EXAMPLE, taken)
  with pytest.raises(InputError, match="no checkpoint .* and no --config.init_from"):
    _predict(config, tmp_path / "empty_run", EXAMPLE, tmp_path / "out")
  assert not (tmp_path / "out").exists()
  from configs import toy as toy_config
  toy = toy_config.get_config()
  with pytest.raises(ConfigError, match="does not predict"):
    loop.run(toy, tmp_path / "toy", "predict")


def test_free_sequence_names_group_by_sequence_and_h36m_names_by_action():
  # The h36m_poses builder gives a Human3.6M sequence its canonical action ("Walking 1" ->
  # "Walking") and any other sequence its own name as the action ("Dance").
  names = [("S9", "Walking", "Walking 1", "54138969"), ("S9", "Walking", "Walking 2", "54138969"),
           ("S9", "Dance", "Dance", "54138969")]
  info = evaluation.SequenceInfo.from_names(names)
  rng = np.random.default_rng(0)
  target = rng.normal(size=(9, 17, 3)) * 100
  pred = target + rng.normal(size=(9, 17, 3)) * np.arange(1, 10)[:, None, None]
  sequence = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
  table = evaluation.summarize(evaluation.frame_errors(pred, target), sequence, info)
  per_frame = np.linalg.norm((pred - pred[:, :1]) - (target - target[:, :1]), axis=-1).mean(-1)
  assert list(table["per_action"]) == ["Walking", "Dance"]    # Human3.6M order, then others
  assert table["per_action"]["Walking"]["num_frames"] == 5
  assert table["per_action"]["Dance"]["mpjpe"] == pytest.approx(per_frame[5:].mean(), abs=0.05)
  assert table["mpjpe"] == pytest.approx((per_frame[:5].mean() + per_frame[5:].mean()) / 2,
                                         abs=0.05)
  assert set(table["per_sequence"]) == {"S9 Walking 1 54138969", "S9 Walking 2 54138969",
                                        "S9 Dance 54138969"}
  # A table whose action is empty (a source without actions) groups by the sequence name.
  info = evaluation.SequenceInfo.from_names([("S9", "", "Dance", "cam"), ("S9", "", "Jig", "c")])
  assert info.actions == ("Dance", "Jig")
