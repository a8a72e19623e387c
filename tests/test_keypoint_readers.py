"""Each keypoint reader on a tiny fake written from the format's public description."""

import csv
import json
import os

import numpy as np
import pytest

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.geometry import cameras
from geopose_jax.keypoints import detect_format, normalized_pose_2d, read_keypoints

W, H = 640, 480


def _coco_frames(n=4, seed=0):
  rng = np.random.default_rng(seed)
  base = rng.uniform(150, 400, (17, 2))
  return np.stack([base + 3 * t for t in range(n)])  # (n, 17, 2)


def _expected(points, layout):
  return layouts.to_h36m(points, np.ones(points.shape[:-1]), layout)[0]


def _coco_entry(frame, pts, score=0.9, box=None, track=None, image_id=None):
  kp = np.concatenate([pts, np.full((len(pts), 1), score)], 1).ravel().tolist()
  entry = {"image_id": frame if image_id is None else image_id, "category_id": 1,
           "keypoints": kp, "score": score}
  if box is not None:
    entry["bbox"] = box
  if track is not None:
    entry["track_id"] = track
  return entry


def test_coco_results_largest_box_and_normalisation(tmp_path):
  pts = _coco_frames()
  small = pts * 0.2
  entries = []
  for f in range(4):
    entries.append(_coco_entry(f, small[f], box=[10, 10, 20, 30], track=7))
    entries.append(_coco_entry(f, pts[f], box=[100, 100, 300, 300], track=3))
  path = tmp_path / "det.json"
  path.write_text(json.dumps(entries))
  assert detect_format(str(path)) == "coco"
  seq, = read_keypoints(path, width=W, height=H)
  np.testing.assert_allclose(seq.pose_2d_px, _expected(pts, "coco17"), atol=1e-4)
  np.testing.assert_array_equal(seq.frames, np.arange(4))
  assert seq.source_layout == "coco17" and (seq.width, seq.height) == (W, H)
  # Normalisation as the h36m_poses builder: x / w * 2 - [1, h / w] on float32.
  ref = cameras.normalize_screen_coordinates(seq.pose_2d_px, np.float32(W), np.float32(H))
  np.testing.assert_array_equal(normalized_pose_2d(seq), np.asarray(ref, np.float32))
  x = seq.pose_2d_px[0, 0]
  np.testing.assert_allclose(normalized_pose_2d(seq)[0, 0],
                             [x[0] / W * 2 - 1, x[1] / W * 2 - H / W], rtol=1e-5)
  # Track id picks the other person.
  seq7, = read_keypoints(path, width=W, height=H, track_id=7)
  np.testing.assert_allclose(seq7.pose_2d_px, _expected(small, "coco17"), atol=1e-4)
  with pytest.raises(InputError, match="track id 5"):
    read_keypoints(path, width=W, height=H, track_id=5)


def test_coco_dataset_form_gives_size_and_gaps_are_filled(tmp_path):
  pts = _coco_frames(3)
  doc = {"images": [{"id": i, "file_name": f"f_{i:04d}.jpg", "width": W, "height": H}
                    for i in (0, 2)],
         "annotations": [_coco_entry(0, pts[0]), _coco_entry(2, pts[2])]}
  path = tmp_path / "gt.json"
  path.write_text(json.dumps(doc))
  seq, = read_keypoints(path)
  assert (seq.width, seq.height) == (W, H)
  np.testing.assert_array_equal(seq.frames, [0, 1, 2])
  assert seq.interpolated[1].all() and not seq.interpolated[0].any()
  exp = _expected(pts, "coco17")
  np.testing.assert_allclose(seq.pose_2d_px[1], (exp[0] + exp[2]) / 2, atol=1e-4)


def test_low_confidence_joint_is_interpolated(tmp_path):
  pts = _coco_frames(3)
  entries = [_coco_entry(f, pts[f]) for f in range(3)]
  entries[1]["keypoints"][9 * 3 + 2] = 0.05  # left wrist of frame 1
  path = tmp_path / "d.json"
  path.write_text(json.dumps(entries))
  seq, = read_keypoints(path, width=W, height=H)
  assert seq.interpolated[1, 13] and seq.interpolated.sum() == 1
  assert seq.confidence[1, 13] == pytest.approx(0.05)
  np.testing.assert_allclose(seq.pose_2d_px[1, 13], (pts[0, 9] + pts[2, 9]) / 2, atol=1e-4)


def test_alphapose_halpe(tmp_path):
  pts = np.concatenate([_coco_frames(2), np.full((2, 9, 2), 200.0)], axis=1)
  entries = [{"image_id": f"{f}.jpg", "category_id": 1, "score": 2.5, "idx": 1,
              "box": [50, 60, 200, 300],
              "keypoints": np.concatenate([pts[f], np.ones((26, 1))], 1).ravel().tolist()}
             for f in range(2)]
  path = tmp_path / "alphapose-results.json"
  path.write_text(json.dumps(entries))
  seq, = read_keypoints(path, width=W, height=H, track_id=1)
  assert seq.source_layout == "halpe26"
  np.testing.assert_allclose(seq.pose_2d_px, _expected(pts, "halpe26"), atol=1e-4)
  np.testing.assert_allclose(seq.boxes[0], [50, 60, 200, 300])


def test_openpose_folder(tmp_path):
  rng = np.random.default_rng(1)
  pts = rng.uniform(100, 400, (3, 25, 2))
  folder = tmp_path / "op"
  folder.mkdir()
  for f in range(3):
    people = [{"person_id": [-1], "pose_keypoints_2d":
               np.concatenate([pts[f], np.full((25, 1), 0.8)], 1).ravel().tolist()}]
    (folder / f"clip_{f:012d}_keypoints.json").write_text(
        json.dumps({"version": 1.3, "people": people}))
  assert detect_format(str(folder)) == "openpose"
  seq, = read_keypoints(folder, width=W, height=H)
  np.testing.assert_allclose(seq.pose_2d_px, _expected(pts, "body25"), atol=1e-4)
  assert seq.name == "op"


def test_mediapipe_json_and_csv(tmp_path):
  rng = np.random.default_rng(2)
  norm = rng.uniform(0.2, 0.8, (2, 33, 2))
  doc = {"width": W, "height": H, "frames": [
      {"frame": f, "landmarks": [{"x": float(x), "y": float(y), "z": 0.0, "visibility": 0.9}
                                 for x, y in norm[f]]} for f in range(2)]}
  path = tmp_path / "mp.json"
  path.write_text(json.dumps(doc))
  seq, = read_keypoints(path)
  pixels = norm * [W, H]
  np.testing.assert_allclose(seq.pose_2d_px, _expected(pixels, "mediapipe33"), atol=1e-3)
  csv_path = tmp_path / "mp.csv"
  with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["frame", "landmark", "x", "y", "z", "visibility"])
    for fr in range(2):
      for k in range(33):
        w.writerow([fr, k, norm[fr, k, 0], norm[fr, k, 1], 0.0, 0.9])
  seq_csv, = read_keypoints(csv_path, width=W, height=H)
  np.testing.assert_allclose(seq_csv.pose_2d_px, seq.pose_2d_px, atol=1e-3)


def test_videopose3d_custom(tmp_path):
  pts = _coco_frames(5)
  path = tmp_path / "data_2d_custom_myvideos.npz"
  np.savez_compressed(path, positions_2d={"dance.mp4": {"custom": [pts.astype(np.float32)]}},
                      metadata={"layout_name": "coco", "num_joints": 17,
                                "keypoints_symmetry": [[1, 3], [2, 4]],
                                "video_metadata": {"dance.mp4": {"w": 1280, "h": 720}}})
  assert detect_format(str(path)) == "videopose3d"
  seq, = read_keypoints(path)
  assert seq.name == "dance.mp4" and (seq.width, seq.height) == (1280, 720)
  np.testing.assert_allclose(seq.pose_2d_px, _expected(pts, "coco17"), atol=1e-3)


def test_plain_h36m_arrays(tmp_path):
  pts = np.random.default_rng(3).uniform(50, 400, (4, 17, 2)).astype(np.float32)
  np.save(tmp_path / "a.npy", pts)
  seq, = read_keypoints(tmp_path / "a.npy", width=W, height=H)
  np.testing.assert_allclose(seq.pose_2d_px, pts)
  np.savez(tmp_path / "b.npz", keypoints=pts, width=W, height=H)
  np.testing.assert_allclose(read_keypoints(tmp_path / "b.npz")[0].pose_2d_px, pts)
  (tmp_path / "c.json").write_text(json.dumps({"keypoints": pts.tolist(), "width": W,
                                               "height": H}))
  np.testing.assert_allclose(read_keypoints(tmp_path / "c.json")[0].pose_2d_px, pts,
                             atol=1e-4)


# --- bad input: one InputError naming file, field and expected form ------------------------

def _write(tmp_path, name, obj):
  path = tmp_path / name
  path.write_text(json.dumps(obj))
  return path


def test_unknown_format(tmp_path):
  path = tmp_path / "x.txt"
  path.write_text("hello")
  with pytest.raises(InputError, match=r"x\.txt: unknown keypoint format"):
    read_keypoints(path)
  with pytest.raises(InputError, match="unknown keypoint format") as error:
    read_keypoints(_write(tmp_path, "y.json", {"foo": 1}))
  # The hints name the override a user types, not a Python keyword.
  assert "--config.predict.format=<one of videopose3d, coco," in str(error.value)
  np.savez(tmp_path / "vp.npz", positions_2d={"s": {"c": [np.zeros((2, 17, 2))]}},
           metadata={"video_metadata": {}})
  with pytest.raises(InputError, match=r"no 'layout_name'; pass --config\.predict\.layout="):
    read_keypoints(tmp_path / "vp.npz")


def test_wrong_joint_count(tmp_path):
  entry = _coco_entry(0, _coco_frames(1)[0])
  path = _write(tmp_path, "d.json", [entry])
  with pytest.raises(InputError, match=r"d\.json: entry 0: 'keypoints' holds 51 numbers; "
                                       r"layout halpe26 expects 26"):
    read_keypoints(path, layout="halpe26", width=W, height=H)
  np.save(tmp_path / "a.npy", np.zeros((3, 16, 2)))
  with pytest.raises(InputError, match=r"a\.npy: 'keypoints' has shape \(3, 16, 2\)"):
    read_keypoints(tmp_path / "a.npy", width=W, height=H)


def test_nan_and_all_zero(tmp_path):
  pts = _coco_frames(2)
  pts[1, 3] = np.nan
  np.save(tmp_path / "nan.npy", _expected(pts, "coco17"))
  with pytest.raises(InputError, match=r"nan\.npy.*frame 1: joint 'Head' has NaN"):
    read_keypoints(tmp_path / "nan.npy", width=W, height=H)
  np.save(tmp_path / "zero.npy", np.zeros((3, 17, 2)))
  with pytest.raises(InputError, match=r"zero\.npy.*every coordinate is NaN or zero"):
    read_keypoints(tmp_path / "zero.npy", width=W, height=H)


def test_zero_frames(tmp_path):
  with pytest.raises(InputError, match=r"e\.json: holds zero detections"):
    read_keypoints(_write(tmp_path, "e.json", []), format="coco")
  np.save(tmp_path / "z.npy", np.zeros((0, 17, 2)))
  with pytest.raises(InputError, match="has no frames"):
    read_keypoints(tmp_path / "z.npy", width=W, height=H)
  os.mkdir(tmp_path / "empty")
  with pytest.raises(InputError, match="without"):
    read_keypoints(tmp_path / "empty")


def test_box_outside_image(tmp_path):
  path = _write(tmp_path, "b.json", [_coco_entry(0, _coco_frames(1)[0],
                                                  box=[700, 10, 50, 50])])
  with pytest.raises(InputError, match=r"b\.json: frame 0: box .* outside the 640 x 480"):
    read_keypoints(path, width=W, height=H)


def test_missing_image_size(tmp_path):
  path = _write(tmp_path, "s.json", [_coco_entry(0, _coco_frames(1)[0])])
  with pytest.raises(InputError, match=r"pass --config\.predict\.width=W --config\.predict\.height=H"):
    read_keypoints(path)


def test_videopose3d_declared_layout_joint_count(tmp_path):
  path = tmp_path / "vp.npz"
  np.savez(path, positions_2d={"v": {"custom": [np.ones((3, 17, 2), np.float32)]}},
           metadata={"layout_name": "h36m", "num_joints": 16,
                     "video_metadata": {"v": {"w": W, "h": H}}})
  with pytest.raises(InputError, match=r"vp\.npz: metadata num_joints = 16 but layout h36m17"):
    read_keypoints(path)
  np.savez(path, positions_2d={"v": {"custom": [np.ones((3, 25, 2), np.float32)]}},
           metadata={"layout_name": "coco", "video_metadata": {"v": {"w": W, "h": H}}})
  with pytest.raises(InputError, match=r"\['custom'\]\[0\] has shape \(3, 25, 2\); layout "
                                       r"coco17 expects \(frames, 17, 2\)"):
    read_keypoints(path)


def test_mediapipe_wrong_landmark_count(tmp_path):
  doc = {"width": W, "height": H, "frames": [
      {"frame": 0, "landmarks": [{"x": 0.5, "y": 0.5, "visibility": 1.0}] * 25}]}
  path = _write(tmp_path, "mp.json", doc)
  with pytest.raises(InputError, match=r"mp\.json: frames\[0\]: holds 25 landmarks; "
                                       r"MediaPipe Pose expects 33"):
    read_keypoints(path)


def test_openpose_wrong_count_names_file_and_field(tmp_path):
  folder = tmp_path / "op"
  folder.mkdir()
  (folder / "v_000000000000_keypoints.json").write_text(json.dumps(
      {"people": [{"pose_keypoints_2d": [1.0] * 54}]}))
  with pytest.raises(InputError, match=r"keypoints\.json: people\[0\]\.pose_keypoints_2d "
                                       r"holds 54 numbers; layout body25 expects 25"):
    read_keypoints(folder, width=W, height=H)


def test_person_choice_is_logged(tmp_path, caplog):
  pts = _coco_frames(2)
  entries = [_coco_entry(f, pts[f] * s, track=t) for f in range(2) for s, t in ((1, 0), (0.5, 1))]
  path = _write(tmp_path, "two.json", entries)
  with caplog.at_level("INFO", logger="geopose_jax.keypoints.people"):
    read_keypoints(path, width=W, height=H)
  assert "2 frames hold several people; took the largest box" in caplog.text
  caplog.clear()
  with caplog.at_level("INFO", logger="geopose_jax.keypoints.people"):
    seq, = read_keypoints(path, width=W, height=H, track_id=1)
  assert "following track id 1 in 2 of 2 frames" in caplog.text
  np.testing.assert_allclose(seq.pose_2d_px, _expected(pts * 0.5, "coco17"), atol=1e-4)
