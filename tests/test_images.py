"""Image inputs: frame folders, videos, box files and crops made with the builders' code."""

import json

import numpy as np
import PIL.Image
import pytest

from geopose_jax import boxes as boxes_lib
from geopose_jax import images
from geopose_jax.errors import InputError
from geopose_jax.geometry import crops


def _frames(n=3, w=64, h=48):
  rng = np.random.default_rng(0)
  return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_frame_folder(tmp_path):
  frames = _frames()
  for i, f in enumerate(frames):
    PIL.Image.fromarray(f).save(tmp_path / f"img_{i:03d}.png")
  (tmp_path / "notes.txt").write_text("not a frame")
  source = images.open_frames(tmp_path)
  assert (source.width, source.height, source.num_frames) == (64, 48, 3)
  for got, want in zip(source.frames(), frames):
    np.testing.assert_array_equal(got, want)


def test_video_file_and_undecodable_video(tmp_path):
  av = pytest.importorskip("av")
  path = str(tmp_path / "v.mp4")
  with av.open(path, "w") as container:
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for f in _frames(5):
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  source = images.open_frames(path)
  assert (source.width, source.height, source.num_frames) == (64, 48, 5)
  assert sum(1 for _ in source.frames()) == 5
  bad = tmp_path / "broken.mp4"
  bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
  with pytest.raises(InputError, match=r"broken\.mp4: the video does not decode"):
    images.open_frames(bad)


def test_empty_folder_and_missing_path(tmp_path):
  with pytest.raises(InputError, match="holds no images"):
    images.open_frames(tmp_path)
  with pytest.raises(InputError, match="not found"):
    images.open_frames(tmp_path / "nope.mp4")


def test_box_files_and_dense_boxes(tmp_path):
  (tmp_path / "b.csv").write_text("frame,x,y,w,h\n0,10,5,20,30\n2,12,6,20,30\n")
  (tmp_path / "b.json").write_text(json.dumps({"0": [10, 5, 20, 30], "2": [12, 6, 20, 30]}))
  (tmp_path / "c.json").write_text(json.dumps([{"frame": 0, "bbox": [10, 5, 20, 30]},
                                               {"frame": 2, "bbox": [12, 6, 20, 30]}]))
  for name in ("b.csv", "b.json", "c.json"):
    boxes = boxes_lib.read_box_file(tmp_path / name)
    dense, filled = boxes_lib.fill_gaps(boxes, 4, 1, name)
    # Frame 1 halfway between frames 0 and 2; frame 3 takes the last box.
    np.testing.assert_allclose(dense[:, 0], [10, 11, 12, 12])
    np.testing.assert_allclose(dense[:, 1], [5, 5.5, 6, 6])
    np.testing.assert_array_equal(filled, [False, True, False, True])
  (tmp_path / "out.json").write_text(json.dumps({"0": [1, 1, 5, 5], "2": [70, 1, 5, 5]}))
  with pytest.raises(InputError, match=r"frame 2: box .* outside the 64 x 48 image"):
    boxes_lib.load_boxes(tmp_path / "out.json", 3, 64, 48)
  with pytest.raises(InputError, match=r"no box for frames 1-3, 6"):
    boxes_lib.fill_gaps({0: np.ones(4), 4: np.ones(4), 5: np.ones(4)}, 7, 0, "b.json")
  (tmp_path / "bad.json").write_text(json.dumps({"0": [1, 2, 3]}))
  with pytest.raises(InputError, match=r"bad\.json: frame '0': box \[1.0, 2.0, 3.0\] is not"):
    boxes_lib.read_box_file(tmp_path / "bad.json")


def test_square_crop_box_and_crops_match_builder_code(tmp_path):
  box = images.square_crop_box(np.array([10.0, 4.0, 20.0, 30.0]))
  # Centre (20, 19), longer half side 15 x 1.08 = 16.2.
  np.testing.assert_allclose(box, [20 - 16.2, 19 - 16.2, 32.4])
  frames = _frames(2)
  for i, f in enumerate(frames):
    PIL.Image.fromarray(f).save(tmp_path / f"{i}.png")
  source = images.open_frames(tmp_path)
  boxes = np.array([[10.0, 4.0, 20.0, 30.0], [0.0, 0.0, 64.0, 48.0]])
  out = list(images.person_crops(source, boxes, 16))
  assert len(out) == 2
  for (crop, crop_box), frame, b in zip(out, frames, boxes):
    np.testing.assert_array_equal(crop, crops.crop_image(frame, images.square_crop_box(b), 16))
    np.testing.assert_allclose(crop_box, images.square_crop_box(b))
    assert crop.shape == (16, 16, 3)


def test_data_prep_reexport_is_the_same_code():
  from data_prep import crops as prep_crops
  assert prep_crops.crop_image is crops.crop_image
  assert prep_crops.square_box is crops.square_box


def test_boxes_from_a_coco_keypoint_file(tmp_path):
  frames = _frames(3)
  folder = tmp_path / "frames"
  folder.mkdir()
  for i, f in enumerate(frames):
    PIL.Image.fromarray(f).save(folder / f"{i}.png")
  kp = np.concatenate([np.full((17, 2), 20.0) + np.arange(17)[:, None], np.ones((17, 1))], 1)
  entries = [{"image_id": i, "category_id": 1, "keypoints": kp.ravel().tolist(),
              "score": 1.0, "bbox": [5 + i, 6, 30, 40]} for i in (0, 1)]
  (tmp_path / "det.json").write_text(json.dumps(entries))
  boxes, _ = boxes_lib.load_boxes(tmp_path / "det.json", 3, 64, 48)
  np.testing.assert_allclose(boxes, [[5, 6, 30, 40], [6, 6, 30, 40], [6, 6, 30, 40]])
  (tmp_path / "b.csv").write_text("frame,x,y,w,h\n1,1,2,3,4\n")
  np.testing.assert_allclose(boxes_lib.load_boxes(tmp_path / "b.csv", 3, 64, 48)[0][0],
                             [1, 2, 3, 4])


def test_extent_boxes_and_smpl_to_h36m_by_hand():
  points = np.array([[[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]]])
  # Extent x 10..30, y 20..60: centre (20, 40), half (10, 20) widened by 15 %.
  np.testing.assert_allclose(boxes_lib.extent_boxes(points),
                             [[20 - 11.5, 40 - 23.0, 23.0, 46.0]])
  from geopose_jax import skeleton
  joints = np.arange(24 * 3, dtype=np.float64).reshape(24, 3)
  h36m = skeleton.smpl_to_h36m(joints)
  assert h36m.shape == (17, 3)
  np.testing.assert_array_equal(h36m[2], joints[5])        # right knee
  np.testing.assert_array_equal(h36m[1], joints[2])        # right hip
  np.testing.assert_array_equal(h36m[10], 2 * joints[15] - joints[12])
