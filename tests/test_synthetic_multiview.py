"""The synthetic multi-view dataset: a tiny build read back and checked against geometry."""


import numpy as np
import pytest

from geopose_jax.errors import DatasetError

from data_prep import build
from data_prep import crops
from data_prep import synthetic_multiview as smv
from data_prep.synthetic_multiview import records
from data_prep.synthetic_multiview import render
from geopose_jax.geometry import cameras as cameras_lib

TINY = "synthetic_multiview/tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("data")
  builder = build.ensure_built(TINY, data_dir)
  source = builder.as_data_source()
  return builder, {split: [smv.decode_record(source[split][i]) for i in range(len(source[split]))]
                   for split in source}


def test_splits_and_layout(tiny):
  builder, splits = tiny
  assert {k: len(v) for k, v in splits.items()} == {"train": 3, "test": 3}
  assert {r["subject"] for r in splits["train"]} == {"S1"}
  assert {r["subject"] for r in splits["test"]} == {"S9"}
  shapes = {"images": ((4, 128, 128, 3), np.uint8), "backgrounds": ((4, 128, 128, 3), np.uint8),
            "masks": ((4, 128, 128), np.uint8), "R": ((4, 3, 3), np.float32),
            "t": ((4, 3), np.float32), "K": ((4, 3, 3), np.float32),
            "pose_3d_world": ((17, 3), np.float32), "pose_3d_cam": ((4, 17, 3), np.float32),
            "pose_2d_px": ((4, 17, 2), np.float32), "pose_2d_crop": ((4, 17, 2), np.float32)}
  for record in splits["train"] + splits["test"]:
    assert set(record) == set(shapes) | {"subject", "action", "sequence", "frame"}
    for key, (shape, dtype) in shapes.items():
      assert record[key].shape == shape and record[key].dtype == dtype, key
    assert isinstance(record["action"], str) and isinstance(record["frame"], int)
  # Built once: a second call finds the complete copy.
  assert build.ensure_built(TINY, builder.data_dir.rsplit("/synthetic_multiview", 1)[0]
                            ).is_prepared()


def test_contact_sheet(tiny, tmp_path):
  from data_prep import show  # pylint: disable=g-import-not-at-top
  builder, _ = tiny
  data_dir = builder.data_dir.rsplit("/synthetic_multiview", 1)[0]
  path = show.show(TINY, data_dir, out=str(tmp_path / "sheet.png"), per_split=1)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert not list(tmp_path.glob("*.tmp.png"))


def test_stored_cameras_reproduce_stored_2d(tiny):
  _, splits = tiny
  for record in splits["train"] + splits["test"]:
    cams = cameras_lib.load_h36m_cameras(record["subject"])
    np.testing.assert_allclose(record["R"], cams.R, atol=1e-6)
    stored = cameras_lib.Camera(R=record["R"].astype(np.float64), t=record["t"].astype(np.float64),
                                f=cams.f, c=cams.c, k=cams.k, p=cams.p, res=cams.res)
    cam_pose = cameras_lib.world_to_camera(
        np.broadcast_to(record["pose_3d_world"], (4, 17, 3)).astype(np.float64), stored)
    np.testing.assert_allclose(cam_pose, record["pose_3d_cam"], atol=0.05)
    distorted = cameras_lib.project_distorted(cam_pose, stored)
    assert np.abs(distorted - record["pose_2d_px"]).max() < 0.5
    # Images are pinhole renderings: K maps camera points onto the crop exactly.
    crop = cameras_lib.project_with_intrinsics(record["pose_3d_cam"].astype(np.float64),
                                               record["K"].astype(np.float64))
    assert np.abs(crop - record["pose_2d_crop"]).max() < 0.01
    assert (record["pose_2d_crop"] > -0.5).all() and (record["pose_2d_crop"] < 127.5).all()
    # The crop is centred on the projected root.
    np.testing.assert_allclose(record["pose_2d_crop"][:, 0], 63.5, atol=0.01)


def test_masks_cover_the_body_inside_the_crop(tiny):
  _, splits = tiny
  for record in splits["train"] + splits["test"]:
    for v in range(4):
      mask = record["masks"][v]
      assert set(np.unique(mask)) == {0, 1} and mask.sum() > 400
      border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
      assert border.sum() == 0
      # Most joints sit on the silhouette.
      u, v_ = np.round(record["pose_2d_crop"][v]).astype(int).T
      assert mask[v_, u].mean() > 0.8
      # Away from the body the image is the background, pixel for pixel.
      far = ~_dilate(mask, 2)
      np.testing.assert_array_equal(record["images"][v][far], record["backgrounds"][v][far])
      assert np.abs(record["images"][v][mask > 0].astype(int)
                    - record["backgrounds"][v][mask > 0]).mean() > 10


def _dilate(mask, radius):
  grown = mask.astype(bool).copy()
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      grown |= np.roll(np.roll(mask.astype(bool), dy, 0), dx, 1)
  return grown


def test_interrupted_build_never_reads_as_complete(tmp_path, monkeypatch):
  real = records.render_frame
  calls = []

  def fails_on_third(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt("simulated interruption")
    return real(*args, **kwargs)

  monkeypatch.setattr(records, "render_frame", fails_on_third)
  with pytest.raises(KeyboardInterrupt):
    build.ensure_built(TINY, tmp_path)
  assert not smv.make_builder(TINY, tmp_path).is_prepared()
  assert not (tmp_path / "synthetic_multiview" / "tiny" / "1.0.0").exists()


def test_bad_input_gives_one_clear_error(tmp_path):
  with pytest.raises(ValueError, match="S2"):
    records.plan_frames(["S2"])
  with pytest.raises(DatasetError, match="no_clips/library.json"):
    build.ensure_built(TINY, tmp_path, library_dir=tmp_path / "no_clips")
  with pytest.raises(ValueError, match="unknown synthetic_multiview config 'huge'"):
    build.ensure_built("synthetic_multiview/huge", tmp_path)
  with pytest.raises(ValueError, match="unknown dataset"):
    build.ensure_built("no_such_dataset", tmp_path)


def test_crop_helpers_agree():
  rng = np.random.default_rng(0)
  f, c = np.array([1145.0, 1143.0]), np.array([512.5, 515.4])
  box = np.array([300.3, 280.7, 412.9])
  points_cam = rng.normal([0, 0, 5000], [400, 700, 300], (17, 3))
  px = f * points_cam[:, :2] / points_cam[:, 2:] + c
  k = crops.crop_intrinsics(f, c, box, 128).astype(np.float64)
  np.testing.assert_allclose(cameras_lib.project_with_intrinsics(points_cam, k),
                             crops.crop_points(px, box, 128), atol=1e-3)
  np.testing.assert_allclose(crops.uncrop_points(crops.crop_points(px, box, 128), box, 128), px,
                             atol=1e-9)
  # A bright pixel of a full image lands where crop_points says.
  image = np.zeros((1000, 1000), np.uint8)
  image[500, 420] = 255
  crop = crops.crop_image(image, np.array([400.0, 480.0, 64.0]), 128)
  i, j = np.unravel_index(np.argmax(crop), crop.shape)
  expected = crops.crop_points(np.array([[420.0, 500.0]]), np.array([400.0, 480.0, 64.0]), 128)
  assert abs(j - expected[0, 0]) <= 1.0 and abs(i - expected[0, 1]) <= 1.0


def test_ray_capsule_distance_matches_marching():
  rng = np.random.default_rng(1)
  origin = np.array([0.0, 0.0, 0.0])
  a, b, r = np.array([30.0, -50.0, 1000.0]), np.array([-40.0, 120.0, 1100.0]), 45.0
  directions = rng.normal([0, 0, 1], [0.08, 0.12, 0], (200, 3))
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  t = render._capsule_t(origin, directions, a, b, r)  # pylint: disable=protected-access
  steps = np.linspace(800, 1300, 5001)
  for d, t_hit in zip(directions, t):
    p = steps[:, None] * d
    s = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    inside = np.linalg.norm(p - (a + s[:, None] * (b - a)), axis=-1) <= r
    if inside.any():
      assert abs(steps[np.argmax(inside)] - t_hit) < 0.2
    else:
      assert not np.isfinite(t_hit)


def test_background_crop_matches_direct_rendering():
  cams = cameras_lib.load_h36m_cameras("S5")
  pose = records.plan_frames(["S5"], frame_step=50, max_frames_per_subject=1,
                             max_sequences_per_subject=1)[0].pose_world
  geometry = records.crop_geometry(pose, cams)
  room = render.room_image(cams.R[2], cams.t[2], cams.f[2], cams.c[2], cams.res[2], 0.4)
  resampled = render.background_crop(room, geometry["box"][2], 128, 0.4).astype(int)
  direct = render.room_crop(geometry["K"][2], cams.R[2], cams.t[2], 128).astype(int)
  # Same picture; only edges differ through resampling.
  assert np.median(np.abs(resampled - direct)) == 0
  assert np.mean(np.abs(resampled - direct)) < 8
