"""`--mode=predict` on images: nvs_pose and smpl runs (initial weights saved as a run leaves
them) on a folder of frames or a tiny MP4 with person boxes; bad input stops with one line
and leaves no output folder."""

import copy
import json

import jax
import numpy as np
import PIL.Image
import pytest

from configs import nvs as nvs_config
from configs import nvs_pose as nvs_pose_config
from configs import smpl as smpl_config
from geopose_jax import skeleton
from geopose_jax.body import placement, smpl as smpl_lib
from geopose_jax.errors import ConfigError, InputError
from geopose_jax.geometry import crops
from geopose_jax.models import nvs_synthesis as synthesis
from geopose_jax.tasks import nvs_pose, smpl as smpl_task
from geopose_jax.train import loop, prediction
import fake_poses  # tests/ is on sys.path under pytest

W, H, N = 64, 48, 5


def _tiny(config):
  config.model.net.update(fake_poses.TINY_NVS_NET)
  config.train.progress_bar = False
  config.eval.batch_size = 4
  return config


@pytest.fixture(scope="module")
def nvs_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("image_runs")
  nvs_cfg = _tiny(nvs_config.get_config("demo"))
  model = synthesis.build_model(nvs_cfg.model.net)
  variables = jax.jit(lambda key: synthesis.init_variables(model, 16, key))(jax.random.key(0))
  fake_poses.save_finished_run(root / "nvs", nvs_cfg, {"params": variables["params"],
                                                       "batch_stats": variables["batch_stats"]})
  return root, model


@pytest.fixture(scope="module")
def runs(nvs_run):
  """An nvs_pose run on the nvs run, with initial weights (label statistics made up, so
  that the head's output is undone by a known mean and std)."""
  root, model = nvs_run
  pose_cfg = _tiny(nvs_pose_config.get_config("demo"))
  pose_cfg.model.head_hidden = 16
  pose_cfg.init_from = str(root / "nvs")
  head = nvs_pose.build_head(pose_cfg)
  state = nvs_pose.init(jax.random.key(1), model=model, head=head, image_size=16,
                        optim_config=pose_cfg.optim)
  rng = np.random.default_rng(0)
  state = nvs_pose.put_statistics(state, *nvs_pose.pose_statistics(
      rng.normal(size=(20, 17, 3)) * 300))
  fake_poses.save_finished_run(root / "nvs_pose", pose_cfg, state)
  return root, pose_cfg


@pytest.fixture(scope="module")
def smpl_run(nvs_run):
  """An smpl run on the nvs run, with initial weights."""
  root, model = nvs_run
  smpl_cfg = _tiny(smpl_config.get_config("demo"))
  smpl_cfg.model.width, smpl_cfg.body.detail = 16, 0.3
  smpl_cfg.init_from = str(root / "nvs")
  smpl_cfg.loss.prior = 0.0
  regressor = smpl_task.build_regressor(smpl_cfg)
  smpl_state = smpl_task.init(jax.random.key(2), model=model, regressor=regressor,
                              image_size=16, optim_config=smpl_cfg.optim, prior=None)
  fake_poses.save_finished_run(root / "smpl", smpl_cfg, smpl_state)
  return root, smpl_cfg


def _frames(n=N):
  rng = np.random.default_rng(1)
  return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _frame_folder(folder, frames):
  folder.mkdir()
  for i, f in enumerate(frames):
    PIL.Image.fromarray(f).save(folder / f"frame_{i:04d}.png")
  return folder


def _predict(config, workdir, source, boxes, out, **predict):
  config = copy.deepcopy(config)
  config.init_from = ""             # predict takes it from the run's config.json
  config.predict.input, config.predict.boxes = str(source), str(boxes)
  config.predict.output = str(out)
  config.predict.update(predict)
  return loop.run(config, workdir, "predict")


def test_nvs_pose_predicts_a_frame_folder_with_the_builders_crops(runs, tmp_path, monkeypatch):
  root, config = runs
  frames = _frames()
  source = _frame_folder(tmp_path / "frames", frames)
  given = {0: [10, 4, 20, 30], 1: [12, 4, 20, 30], 3: [16, 6, 24, 30], 4: [16, 6, 24, 30]}
  (tmp_path / "boxes.json").write_text(json.dumps({str(k): v for k, v in given.items()}))
  seen = []
  original = nvs_pose.predict_crops

  def recording(state, batch, **kwargs):
    seen.append(np.array(batch))
    return original(state, batch, **kwargs)

  monkeypatch.setattr(nvs_pose, "predict_crops", recording)
  out = tmp_path / "out"
  folders = _predict(config, root / "nvs_pose", source, tmp_path / "boxes.json", out)
  folder = out / "frames"
  assert folders == {"frames": str(folder)}
  for name in ("poses_3d.npz", "poses_3d.json", "motion.bvh", "render.mp4", "render.gif"):
    assert (folder / name).stat().st_size > 0, name
  with np.load(folder / "poses_3d.npz") as npz:
    poses, boxes = npz["poses_3d_mm"], npz["boxes_xywh"]
    np.testing.assert_array_equal(npz["frames"], np.arange(N))
    np.testing.assert_array_equal(npz["box_filled"], [0, 0, 1, 0, 0])
    metadata = json.loads(str(npz["metadata"]))
  assert poses.shape == (N, 17, 3) and np.isfinite(poses).all()
  np.testing.assert_allclose(poses[:, 0], 0.0, atol=1e-4)       # root-relative
  assert np.abs(poses[:, 1:]).max() > 1.0                        # statistics undone (mm)
  # Frame 2 has no box: halfway between frames 1 and 3.
  np.testing.assert_allclose(boxes[2], [14, 5, 22, 30])
  assert metadata["task"] == "nvs_pose" and metadata["filled_boxes"] == 1
  assert "root-relative" in metadata["root"] and "training subjects" in metadata["scale"]
  assert metadata["weights"].endswith("checkpoints/1") and metadata["fps"] == 25.0
  # Batches of eval.batch_size = 4 over 4 devices: 4 crops, then 1 padded to 4.
  assert [len(b) for b in seen] == [4, 4]
  crops_seen = np.concatenate(seen)[:N]
  for i, (frame, box) in enumerate(zip(frames, boxes)):
    x, y, w, h = box.astype(np.float64)
    half = max(w, h) / 2 * 1.08                 # the builders' 1.08 margin, by hand
    square = np.array([x + w / 2 - half, y + h / 2 - half, 2 * half])
    np.testing.assert_array_equal(crops_seen[i], crops.crop_image(frame, square, 16))
  assert not list(tmp_path.glob(".out.*"))


def test_nvs_pose_reads_a_tiny_mp4(runs, tmp_path):
  av = pytest.importorskip("av")
  root, config = runs
  path = str(tmp_path / "clip.mp4")
  with av.open(path, "w") as container:
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    for f in _frames(6):
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  (tmp_path / "b.csv").write_text("frame,x,y,w,h\n" + "".join(
      f"{i},{5 + i},4,30,36\n" for i in range(6)))
  out = tmp_path / "out"
  _predict(config, root / "nvs_pose", path, tmp_path / "b.csv", out, gif=False)
  folder = out / "clip"
  assert (folder / "render.mp4").stat().st_size > 0 and not (folder / "render.gif").exists()
  with np.load(folder / "poses_3d.npz") as npz:
    assert npz["poses_3d_mm"].shape == (6, 17, 3) and np.isfinite(npz["poses_3d_mm"]).all()
    np.testing.assert_array_equal(npz["frames"], np.arange(6))
    assert json.loads(str(npz["metadata"]))["fps"] == 10.0     # the video's rate


def test_smpl_predicts_bodies_whose_theta_reproduces_the_joints(smpl_run, tmp_path):
  root, config = smpl_run
  source = _frame_folder(tmp_path / "frames", _frames(3))
  # COCO results without 'bbox': the box is the joints' extent.
  rng = np.random.default_rng(2)
  entries = []
  for i in range(3):
    kp = np.concatenate([rng.uniform(15, 40, (17, 2)), np.ones((17, 1))], 1)
    entries.append({"image_id": i, "category_id": 1, "keypoints": kp.ravel().tolist(),
                    "score": 1.0})
  (tmp_path / "det.json").write_text(json.dumps(entries))
  out = tmp_path / "out"
  _predict(config, root / "smpl", source, tmp_path / "det.json", out, video=False, gif=False)
  with np.load(out / "frames" / "poses_3d.npz") as npz:
    poses, theta, beta, vertices = (npz[k] for k in ("poses_3d_mm", "theta", "beta",
                                                     "vertices"))
    metadata = json.loads(str(npz["metadata"]))
  body = smpl_task.load_body(config)
  assert poses.shape == (3, 17, 3) and theta.shape == (3, 72)
  assert beta.shape == (3, config.body.num_betas) and vertices.shape == (3, body.num_vertices, 3)
  np.testing.assert_allclose(poses[:, 0], 0.0, atol=1e-3)
  # The exported axis-angle theta posed again gives the exported joints and vertices.
  v, j = smpl_lib.smpl(body, theta.reshape(3, 24, 3), beta, pose_rep="axis_angle")
  v, j = placement.body_in_camera(v, j, np.zeros((3, 3), np.float32))
  np.testing.assert_allclose(skeleton.smpl_to_h36m(np.asarray(j)), poses, atol=0.05)
  np.testing.assert_allclose(np.asarray(v), vertices, atol=0.05)
  assert "procedural" in metadata["body"] and "hips" in metadata["joints"]


# --------------------------------------------------------------------------- bad input
def _bad_case(tmp_path, kind):
  frames = _frame_folder(tmp_path / "frames", _frames())
  boxes = tmp_path / "boxes.json"
  every = {str(i): [10, 4, 20, 30] for i in range(N)}
  if kind == "undecodable":
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    frames = bad
  elif kind == "zero_frames":
    frames = tmp_path / "empty"
    frames.mkdir()
  elif kind == "frame_count":
    every["7"] = [10, 4, 20, 30]
  elif kind == "outside":
    every["3"] = [100, 4, 20, 30]
  elif kind == "gap":
    every = {"0": [10, 4, 20, 30], "4": [10, 4, 20, 30]}
  elif kind == "keypoint_input":
    frames = tmp_path / "kp.json"
    frames.write_text(json.dumps([{"image_id": 0, "keypoints": [1.0] * 51}]))
  boxes.write_text(json.dumps(every))
  return frames, boxes


@pytest.mark.parametrize("kind,match", [
    ("undecodable", r"broken\.mp4: the video does not decode"),
    ("zero_frames", "holds no images"),
    ("frame_count", r"boxes for frames 7, but the input has 5 frames"),
    ("outside", r"frame 3: box .* lies outside the 64 x 48 image"),
    ("gap", r"no box for frames 1-3; gaps longer than --config\.predict\.max_box_gap=2"),
    ("keypoint_input", "predicts from images, and .* is a keypoint file without the frames")])
def test_bad_image_input_stops_with_one_line_and_no_output(runs, tmp_path, kind, match):
  root, config = runs
  source, boxes = _bad_case(tmp_path, kind)
  out = tmp_path / "out"
  with pytest.raises(InputError, match=match) as error:
    _predict(config, root / "nvs_pose", source, boxes, out, max_box_gap=2)
  assert "\n" not in str(error.value)
  assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_requests_of_the_wrong_kind(runs, tmp_path):
  root, config = runs
  frames = _frame_folder(tmp_path / "frames", _frames(1))
  with pytest.raises(ConfigError, match=r"needs --config\.predict\.boxes=FILE"):
    _predict(config, root / "nvs_pose", frames, "", tmp_path / "out")
  with pytest.raises(InputError, match="task 'lifter' predicts from 2D keypoints, and "):
    prediction.check_input_kind("lifter", "keypoints", str(frames))
  (tmp_path / "clip.mp4").write_bytes(b"")
  with pytest.raises(InputError, match="give a keypoint file"):
    prediction.check_input_kind("rie", "keypoints", str(tmp_path / "clip.mp4"))
  assert not (tmp_path / "out").exists()
