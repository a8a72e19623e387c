"""h36m_multiview: a miniature raw Human3.6M release built into multi-view records."""

from __future__ import annotations

import io
import logging
import pathlib
import pickle
import sys

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

import fake_h36m_raw as fake
from data_prep import crops
from data_prep import h36m_multiview
from data_prep import synthetic_multiview
from data_prep.h36m_multiview import background
from data_prep.h36m_multiview import examples
from data_prep.h36m_multiview import framing
from data_prep.h36m_multiview import h36m_multiview_dataset_builder as builder_lib
from data_prep.h36m_multiview import layout
from geopose_jax.geometry import cameras as cameras_lib
from geopose_jax.skeleton import H36M_32_TO_17

# S1: a pose/video naming variant (TakingPhoto / Photo) and a sequence numbered in the
# videos and masks but not in the pose file, with masks; S11: another variant (WalkDog /
# WalkingDog) and the broken "Directions", which must be skipped.
RELEASE = {
    "S1": [fake.FakeSequence("TakingPhoto 1", "Photo 1", 12, 13, seed=1),
           fake.FakeSequence("Walking", "Walking 1", 12, 14, masks=True, seed=2)],
    "S11": [fake.FakeSequence("WalkDog 1", "WalkingDog 1", 11, 11, seed=3),
            fake.FakeSequence("Directions", "Directions", 6, 6, seed=4)],
}
BACKGROUND_EVERY = 4
SIZE = framing.CROP_SIZE


def write_release(root: pathlib.Path) -> dict:
  """Writes RELEASE under root; returns {(subject, pose name): world mm (N, 32, 3)}."""
  worlds = {}
  for subject, sequences in RELEASE.items():
    for seq in sequences:
      worlds[(subject, seq.pose_name)] = fake.write_sequence(root, subject, seq)
  # The release's S11 "Directions" video of the first camera cannot be decoded.
  (root / "S11" / "Videos" / f"Directions.{fake.CAMERA_IDS[0]}.mp4").write_bytes(b"\0" * 64)
  return worlds


def config():
  return h36m_multiview.make_config(background_every=BACKGROUND_EVERY)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("h36m")
  manual, data_dir = root / "manual", root / "data"
  worlds = write_release(manual)
  builder = h36m_multiview.ensure_built(data_dir=data_dir, manual_dir=manual, config=config(),
                                        num_workers=0)
  name = f"{h36m_multiview.NAME}/{builder.builder_config.name}"
  source = tfds.data_source(name, data_dir=str(data_dir))
  # Decoded exactly as the synthetic default's records.
  records = {split: [synthetic_multiview.decode_record(source[split][i])
                     for i in range(len(source[split]))] for split in ("train", "test")}
  return {"manual": manual, "data_dir": data_dir, "worlds": worlds, "records": records}


def _box_from_intrinsics(k_crop: np.ndarray, camera: cameras_lib.Camera) -> np.ndarray:
  """Inverts data_prep.crops.crop_intrinsics: (x0, y0, side) in calibrated pixels."""
  scale = k_crop[0, 0] / camera.f[0]
  x0 = camera.c[0] - (k_crop[0, 2] + 0.5) / scale
  y0 = camera.c[1] - (k_crop[1, 2] + 0.5) / scale
  return np.array([x0, y0, SIZE / scale])


def test_splits_sequences_and_shapes(built):
  train, test = built["records"]["train"], built["records"]["test"]
  # Frames 0, 5, 10 of each sequence (10 fps of the 50 fps release), S11 Directions skipped.
  got = sorted((str(r["subject"]), str(r["sequence"]), str(r["action"]), int(r["frame"]))
               for r in train + test)
  expected = sorted([("S1", "TakingPhoto 1", "Photo", f) for f in (0, 5, 10)] +
                    [("S1", "Walking", "Walking", f) for f in (0, 5, 10)] +
                    [("S11", "WalkDog 1", "WalkDog", f) for f in (0, 5, 10)])
  assert got == expected
  assert len(train) == 6 and len(test) == 3
  assert {str(r["subject"]) for r in train} == {"S1"}
  record = train[0]
  shapes = {"images": (4, SIZE, SIZE, 3), "backgrounds": (4, SIZE, SIZE, 3),
            "masks": (4, SIZE, SIZE), "R": (4, 3, 3), "t": (4, 3), "K": (4, 3, 3),
            "pose_3d_world": (17, 3), "pose_3d_cam": (4, 17, 3), "pose_2d_px": (4, 17, 2),
            "pose_2d_crop": (4, 17, 2), "has_masks": (4,)}
  for key, shape in shapes.items():
    assert np.shape(record[key]) == shape, key
  for key in ("images", "backgrounds", "masks"):
    assert record[key].dtype == np.uint8
  assert set(record) == set(synthetic_multiview.multiview_features()) | {"has_masks"}


def test_poses_and_cameras_are_consistent(built):
  for record in built["records"]["train"] + built["records"]["test"]:
    subject, sequence = str(record["subject"]), str(record["sequence"])
    frame = int(record["frame"])
    world = built["worlds"][(subject, sequence)][frame, list(H36M_32_TO_17)]
    np.testing.assert_allclose(record["pose_3d_world"], world, atol=1e-3)
    calibration = cameras_lib.load_h36m_cameras(subject)
    np.testing.assert_allclose(record["R"], calibration.R, atol=1e-6)
    np.testing.assert_allclose(record["t"], calibration.t, atol=1e-3)
    # The stored camera (R, t, K) takes the 3D pose onto the stored 2D.
    cams = framing.numpy_cameras(calibration)
    stored = cameras_lib.Camera(R=np.asarray(record["R"], np.float64),
                                t=np.asarray(record["t"], np.float64), f=cams.f, c=cams.c,
                                k=cams.k, p=cams.p, res=cams.res)
    pose_cam = cameras_lib.world_to_camera(np.broadcast_to(world, (4, 17, 3)), stored)
    np.testing.assert_allclose(record["pose_3d_cam"], pose_cam, atol=0.05)
    crop_2d = cameras_lib.project_with_intrinsics(pose_cam, np.asarray(record["K"], np.float64))
    assert np.abs(crop_2d - record["pose_2d_crop"]).max() < 0.5
    full_2d = cameras_lib.project_distorted(pose_cam, stored)
    assert np.abs(full_2d - record["pose_2d_px"]).max() < 0.5
    # The crop 2D is the full-image pinhole 2D moved into the box the intrinsics describe.
    pinhole = cameras_lib.project_pinhole(pose_cam, cams.f, cams.c)
    for view in range(4):
      k_crop = np.asarray(record["K"][view], np.float64)
      assert k_crop[0, 0] / cams.f[view, 0] == pytest.approx(k_crop[1, 1] / cams.f[view, 1])
      box = _box_from_intrinsics(k_crop, cams[view])
      np.testing.assert_allclose(crops.crop_points(pinhole[view], box, SIZE),
                                 record["pose_2d_crop"][view], atol=0.05)
      # Centred on the projected root: the root lands on the crop centre.
      np.testing.assert_allclose(record["pose_2d_crop"][view, 0], SIZE / 2 - 0.5, atol=0.01)


def test_crops_show_the_person_where_the_intrinsics_put_it(built):
  # The fake frames draw the person around the *distorted* projection; the crops are
  # undistorted, so the pinhole K must put every joint on the person.
  person = np.array(fake.PERSON_RGB, float)
  for record in built["records"]["train"] + built["records"]["test"]:
    for view in range(4):
      image = record["images"][view].astype(float)
      u, v = np.round(record["pose_2d_crop"][view, 0]).astype(int)
      patch = image[v - 3:v + 4, u - 3:u + 4]
      assert np.abs(patch - person).max() < 40, (record["sequence"], record["frame"], view)
      # The crop's corners are scene, not person (the box has a margin around the body).
      assert np.abs(image[0, 0] - person).max() > 60
      if record["has_masks"][view]:
        # Every joint, extreme ones included, lies on the mask (the person's bounding box).
        columns, rows = np.round(record["pose_2d_crop"][view]).astype(int).T
        assert record["masks"][view][rows, columns].all()


def test_masks_where_present_zero_and_flagged_where_absent(built):
  for record in built["records"]["train"] + built["records"]["test"]:
    masks = record["masks"]
    if str(record["sequence"]) == "Walking":
      assert record["has_masks"].all()
      images = record["images"].astype(float)
      red = np.all(np.abs(images - np.array(fake.PERSON_RGB)) < 40, axis=-1)
      # The mask crop covers the person drawn in the frame.
      agreement = (masks.astype(bool) == red).mean()
      assert agreement > 0.95 and masks.sum() > 0.05 * masks.size
      assert set(np.unique(masks)) <= {0, 1}
    else:
      assert not record["has_masks"].any()
      assert not masks.any()


def test_backgrounds_are_the_per_pixel_median(built):
  manual = built["manual"]
  for view, camera in enumerate(fake.CAMERA_IDS):
    paths = [manual / "S1" / "Videos" / f"{s.video_name}.{camera}.mp4" for s in RELEASE["S1"]]
    samples = np.concatenate([fake.decode_video(p)[::BACKGROUND_EVERY] for p in paths])
    reference = np.floor(np.median(samples.astype(float), axis=0) + 0.5).astype(np.uint8)
    # Strips of one row: the strip-wise median over the spooled samples is the median.
    full = background.median_background(paths, BACKGROUND_EVERY, max_strip_bytes=1)
    np.testing.assert_array_equal(full, reference)
    calibration = framing.numpy_cameras(cameras_lib.load_h36m_cameras("S1"))
    scale = fake.VIDEO_SIZES[view][0] / calibration.res[view, 0]
    rng = np.random.default_rng(view)
    for record in built["records"]["train"]:
      # A hand-made reference at some pixels: the ray of the crop pixel through the real
      # (distorted) camera, to frame pixels, bilinear interpolation of the median.
      k_crop = np.asarray(record["K"][view], np.float64)
      for row, column in rng.integers(0, SIZE, (20, 2)):
        ray = np.array([[(column - k_crop[0, 2]) / k_crop[0, 0],
                         (row - k_crop[1, 2]) / k_crop[1, 1], 1.0]])
        u, v = (cameras_lib.project_distorted(ray, calibration[view])[0] + 0.5) * scale - 0.5
        expected = _bilinear(reference, u, v)
        stored = record["backgrounds"][view][row, column].astype(float)
        assert np.abs(stored - expected).max() <= 1.0, (row, column)


def _bilinear(image: np.ndarray, u: float, v: float) -> np.ndarray:
  """(C,) value of an (H, W, C) image at (u, v), pixel centres at integers, black outside."""
  u0, v0 = int(np.floor(u)), int(np.floor(v))
  value = np.zeros(image.shape[-1])
  for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):
    weight = (1 - abs(u - u0 - du)) * (1 - abs(v - v0 - dv))
    if 0 <= v0 + dv < image.shape[0] and 0 <= u0 + du < image.shape[1]:
      value += weight * image[v0 + dv, u0 + du]
  return value


def test_naming_variants_are_matched(tmp_path):
  assert layout.sequence_key("TakingPhoto 1", tmp_path) == ("Photo", "1")
  assert layout.sequence_key("WalkDog", tmp_path) == ("WalkDog", "")
  assert layout.sequence_key("Walking 2", tmp_path) == layout.sequence_key("Walking_2", tmp_path)
  with pytest.raises(ValueError, match="Dancing 1"):
    layout.sequence_key("Dancing 1", tmp_path)


def test_pose_files_pair_with_their_videos(tmp_path):
  def pair(poses, videos, subject="S1"):
    keys = {name: layout.sequence_key(name, tmp_path) for name in poses}
    files = {(name, camera): tmp_path / f"{name}.{camera}.mp4"
             for name in videos for camera in fake.CAMERA_IDS}
    pairs = layout._pair_files(subject, keys, files)  # pylint: disable=protected-access
    camera = fake.CAMERA_IDS[0]
    return {name: pairs[(name, camera)].name.split(".")[0]
            for name in poses if (name, camera) in pairs}

  # Sequences with and without a number are different sequences; names win over keys.
  assert pair(["Directions", "Directions 1"], ["Directions 1", "Directions"]) == {
      "Directions": "Directions", "Directions 1": "Directions 1"}
  assert pair(["TakingPhoto", "WalkingDog 2"], ["Photo", "WalkDog 2"]) == {
      "TakingPhoto": "Photo", "WalkingDog 2": "WalkDog 2"}
  # Numbering differs: paired only when one file of the action is left for one pose file.
  assert pair(["Eating", "Eating 2"], ["Eating 1", "Eating 2"]) == {
      "Eating": "Eating 1", "Eating 2": "Eating 2"}
  assert pair(["Eating", "Eating 3"], ["Eating 1", "Eating 2"]) == {}
  # The broken S11 "Directions" video is never taken for another sequence.
  assert pair(["Directions 1"], ["Directions"], subject="S11") == {}
  with pytest.raises(ValueError, match="several files could be sequence 'Photo 1'"):
    pair(["Photo 1"], ["TakingPhoto 1", "Photo_1"])


def test_frame_scale_and_pixel_mapping():
  res = np.array([1000.0, 1002.0])
  assert framing.frame_scale(1000, 1002, res, "v.mp4") == 1.0
  assert framing.frame_scale(1000, 1000, res, "v.mp4") == 1.0  # the 1000 px tall variant
  assert framing.frame_scale(64, 64, res, "v.mp4") == pytest.approx(0.064)
  with pytest.raises(ValueError, match="v.mp4: frames are 64x48"):
    framing.frame_scale(64, 48, res, "v.mp4")
  # Image edges map to image edges (pixel centres at integers, edges at -0.5, W - 0.5).
  edges = np.array([[-0.5, -0.5], [999.5, 999.5]])
  np.testing.assert_allclose(framing.to_frame_pixels(edges, 0.064), [[-0.5, -0.5],
                                                                      [63.5, 63.5]])


def test_crop_sample_points_without_distortion_are_the_box():
  camera = framing.numpy_cameras(cameras_lib.load_h36m_cameras("S1"))[1]
  camera = camera.replace(k=np.zeros(3), p=np.zeros(2))
  box = np.array([310.0, 150.5, 420.0])
  k_crop = crops.crop_intrinsics(camera.f, camera.c, box, SIZE)
  points = framing.crop_sample_points(k_crop, camera)
  rows, columns = np.mgrid[0:SIZE, 0:SIZE]
  grid = np.stack([columns, rows], -1).reshape(-1, 2).astype(float)
  expected = crops.uncrop_points(grid, box, SIZE).reshape(SIZE, SIZE, 2)
  np.testing.assert_allclose(points, expected, atol=1e-3)


def _box_points(box: np.ndarray) -> np.ndarray:
  """(SIZE, SIZE, 2) frame pixels of the crop pixel centres of an axis-aligned box."""
  rows, columns = np.mgrid[0:SIZE, 0:SIZE]
  grid = np.stack([columns, rows], -1).reshape(-1, 2).astype(float)
  return crops.uncrop_points(grid, box, SIZE).reshape(SIZE, SIZE, 2)


def test_large_crops_are_shrunk_without_moving_or_aliasing():
  v, u = np.mgrid[0:600, 0:800].astype(float)
  box = np.array([153.2, 97.7, 410.0])
  points = _box_points(box)
  # On a linear ramp box filtering changes nothing, so the pre-shrunk crop equals the
  # direct one (a box side below 2 crops turns the shrink off): coordinates are kept.
  ramp = np.stack([u * 0.3, v * 0.4, 100 + 0 * u], -1).astype(np.uint8)
  direct = framing.sample_crop(ramp, points, box_side_px=SIZE).astype(int)
  shrunk = framing.sample_crop(ramp, points, box_side_px=box[2]).astype(int)
  assert np.abs(direct - shrunk).max() <= 1
  np.testing.assert_allclose(direct, crops.crop_image(ramp, box, SIZE), atol=1)
  # A one-pixel checkerboard comes out near grey instead of aliasing into black and white
  # (the 3x3 blocks of a factor-3 shrink hold 4 or 5 white pixels of 9).
  checker = ((u + v) % 2 * 255).astype(np.uint8)
  assert np.abs(framing.sample_crop(checker, points, SIZE).astype(int) - 127).max() > 100
  assert np.abs(framing.sample_crop(checker, points, box[2]).astype(int) - 127).max() <= 16
  # Masks: coverage >= 1/2 after the same shrink; a half plane stays a half plane.
  half = (u >= 358.0).astype(np.uint8)
  mask = framing.sample_crop(half, points, box[2], threshold=True)
  assert set(np.unique(mask)) == {0, 1}
  column = (358.0 - 0.5 - box[0]) * SIZE / box[2] - 0.5  # where the edge falls in the crop
  assert np.all(mask[:, :int(column) - 1] == 0) and np.all(mask[:, int(column) + 2:] == 1)


# ------------------------------------------------------------------------------- bad input


def _small_release(root: pathlib.Path) -> None:
  fake.write_sequence(root, "S1", fake.FakeSequence("Walking 1", "Walking 1", 6, 6, seed=5))


def _assert_nothing_complete(data_dir: pathlib.Path) -> None:
  assert not list(data_dir.glob("h36m_multiview/*/*/dataset_info.json"))
  assert not h36m_multiview.make_builder(data_dir=data_dir, config=config()).is_prepared()


def _build(manual, data_dir, num_workers=0):
  return h36m_multiview.ensure_built(data_dir=data_dir, manual_dir=manual, config=config(),
                                     num_workers=num_workers)


def test_missing_folders_name_themselves(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
    _build(tmp_path / "nowhere", tmp_path / "data")
  manual = tmp_path / "manual"
  (manual / "S1" / "MyPoseFeatures" / "D3_Positions").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match=r"S1/Videos: no such folder"):
    _build(manual, tmp_path / "data")
  _assert_nothing_complete(tmp_path / "data")


def test_missing_and_broken_videos_name_the_file(tmp_path):
  manual = tmp_path / "manual"
  _small_release(manual)
  video = manual / "S1" / "Videos" / f"Walking 1.{fake.CAMERA_IDS[2]}.mp4"
  video.unlink()
  with pytest.raises(FileNotFoundError, match=f"{video}: no such video"):
    _build(manual, tmp_path / "data")
  video.write_bytes(b"not a video")
  with pytest.raises(ValueError, match=f"{video}: not a readable video"):
    _build(manual, tmp_path / "data")
  _assert_nothing_complete(tmp_path / "data")


def test_wrong_cdf_shape_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _small_release(manual)
  pose_file = manual / "S1" / "MyPoseFeatures" / "D3_Positions" / "Walking 1.cdf"
  fake.write_pose_cdf(pose_file, np.zeros((6, 30, 3)))
  with pytest.raises(ValueError, match=r"Walking 1.cdf: 'Pose' has shape \(6, 90\); "
                     r"expected \(1, N, 96\)"):
    _build(manual, tmp_path / "data")
  _assert_nothing_complete(tmp_path / "data")


def test_unknown_subject_is_refused(tmp_path):
  with pytest.raises(ValueError, match=r"unknown subject\(s\) \['S3'\]"):
    h36m_multiview.make_config(train_subjects=("S1", "S3"))
  with pytest.raises(ValueError, match=r"\['S1'\] are in both"):
    h36m_multiview.make_config(train_subjects=("S1",), test_subjects=("S1",))
  with pytest.raises(ValueError, match="unknown h36m_multiview config 'tiny'"):
    h36m_multiview.make_builder("h36m_multiview/tiny", tmp_path)


def test_missing_packages_give_one_install_message(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  (manual / "S1").mkdir(parents=True)
  monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
  with pytest.raises(ImportError, match=r"needs av .*pip install -e '\.\[h36m\]'"):
    _build(manual, tmp_path / "data")


def test_interrupted_build_never_reads_as_complete(tmp_path, monkeypatch):
  manual, data_dir = tmp_path / "manual", tmp_path / "data"
  _small_release(manual)
  original = examples.sequence_examples

  def interrupted(*args, **kwargs):
    for number, item in enumerate(original(*args, **kwargs)):
      if number == 1:
        raise KeyboardInterrupt("interrupted")
      yield item

  monkeypatch.setattr(examples, "sequence_examples", interrupted)
  with pytest.raises(KeyboardInterrupt):
    _build(manual, data_dir)
  _assert_nothing_complete(data_dir)
  monkeypatch.setattr(examples, "sequence_examples", original)
  builder = _build(manual, data_dir)
  assert builder.info.splits["train"].num_examples == 2  # frames 0 and 5 of 6


def test_worker_jobs_survive_pickling_and_give_the_same_records(built):
  # The jobs worker processes receive (spawned processes get them pickled); running them
  # here checks both without paying for a process start.
  cams = cameras_lib.load_h36m_cameras("S11")
  plans = [examples.plan_sequence(raw, cams)
           for raw in layout.subject_sequences(built["manual"], "S11")]
  jobs = [([plan.videos[view].path for plan in plans], BACKGROUND_EVERY) for view in range(4)]
  backgrounds = [builder_lib._background_job(pickle.loads(pickle.dumps(job))) for job in jobs]
  job = (plans[0], framing.numpy_cameras(cams), backgrounds, 5)
  produced = builder_lib._sequence_job(pickle.loads(pickle.dumps(job)))
  stored = {r["frame"]: r for r in built["records"]["test"]}
  assert [key for key, _ in produced] == [f"S11/WalkDog 1/{f:05d}" for f in sorted(stored)]
  for _, record in produced:
    expected = stored[record["frame"]]
    np.testing.assert_array_equal(record["masks"], expected["masks"])
    np.testing.assert_array_equal(record["pose_2d_crop"], expected["pose_2d_crop"])
    for key in ("images", "backgrounds"):
      decoded = np.stack([np.asarray(PIL.Image.open(io.BytesIO(v))) for v in record[key]])
      np.testing.assert_array_equal(decoded, expected[key])


def test_broken_s11_directions_is_skipped_with_a_warning(built, caplog):
  with caplog.at_level(logging.WARNING):
    sequences = layout.subject_sequences(built["manual"], "S11")
  assert [s.sequence for s in sequences] == ["WalkDog 1"]
  assert "S11 'Directions'" in caplog.text and "broken" in caplog.text
  # The variant's videos were found under their own names.
  assert sequences[0].video_paths[0].name == f"WalkingDog 1.{fake.CAMERA_IDS[0]}.mp4"
