r"""Writes examples/synthetic_S9_coco17.json: a held-out synthetic clip's 2D as COCO-17.

    python scripts/make_coco_example.py [--out=examples/synthetic_S9_coco17.json]

The clip is test subject S9's first sequence (a CMU clip no training subject performs),
seen by Human3.6M camera 54138969 with its distortion. The 12 body keypoints are the
projected H36M joints; the five face keypoints are projections of points placed on the
synthetic head: with `up` from the head joint (9) to the head top (10), `left` from the
right to the left shoulder made perpendicular to `up`, and `forward` = left x up, and L the
head joint to head top distance,
  nose = head + 0.35 L up + 0.5 L forward,
  eyes = head + 0.55 L up + 0.42 L forward +- 0.17 L left,
  ears = head + 0.45 L up +- 0.42 L left.
Written in the COCO dataset form (images with width/height, annotations with keypoints,
score, bbox, track_id) so it carries the frame size; coordinates rounded to 0.01 px.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from geopose_jax.data import motion_plan  # noqa: E402
from geopose_jax.geometry import cameras  # noqa: E402

SUBJECT, CAMERA_INDEX = "S9", 0
# COCO body keypoints 5..16 from H36M joints.
_COCO_FROM_H36M = {5: 11, 6: 14, 7: 12, 8: 15, 9: 13, 10: 16, 11: 4, 12: 1, 13: 5, 14: 2,
                   15: 6, 16: 3}


def _unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def face_points(pose: np.ndarray) -> np.ndarray:
  """(F, 17, 3) H36M poses -> (F, 5, 3) nose, left eye, right eye, left ear, right ear."""
  head, top = pose[:, 9], pose[:, 10]
  length = np.linalg.norm(top - head, axis=-1, keepdims=True)
  up = _unit(top - head)
  left = pose[:, 11] - pose[:, 14]
  left = _unit(left - np.sum(left * up, -1, keepdims=True) * up)
  forward = np.cross(left, up)
  at = lambda u, f, l: head + length * (u * up + f * forward + l * left)  # noqa: E731
  return np.stack([at(0.35, 0.5, 0), at(0.55, 0.42, 0.17), at(0.55, 0.42, -0.17),
                   at(0.45, 0.0, 0.42), at(0.45, 0.0, -0.42)], axis=1)


def coco_keypoints(pose_cam: np.ndarray, camera) -> np.ndarray:
  """(F, 17, 3) camera-frame poses -> (F, 17, 2) COCO-17 pixels (distorted projection)."""
  points = np.zeros((len(pose_cam), 17, 3))
  points[:, :5] = face_points(pose_cam)
  for coco, h36m in _COCO_FROM_H36M.items():
    points[:, coco] = pose_cam[:, h36m]
  return np.asarray(cameras.project_distorted(points, camera))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="examples/synthetic_S9_coco17.json")
  args = parser.parse_args()
  sequence = motion_plan.subject_sequences(SUBJECT)[0]
  cams = cameras.load_h36m_cameras(SUBJECT)
  camera = cameras.Camera(*(np.asarray(getattr(cams, f), np.float64)[CAMERA_INDEX]
                            for f in ("R", "t", "f", "c", "k", "p", "res")))
  pose_cam = np.asarray(cameras.world_to_camera(np.asarray(sequence.poses_world, np.float64),
                                                camera))
  pixels = coco_keypoints(pose_cam, camera)
  width, height = (int(v) for v in camera.res)
  images, annotations = [], []
  for f, kp in enumerate(pixels):
    lo, hi = kp.min(axis=0), kp.max(axis=0)
    images.append({"id": f, "file_name": f"{sequence.sequence}_{f:06d}.jpg", "width": width,
                   "height": height})
    triples = np.concatenate([np.round(kp, 2), np.ones((17, 1))], axis=1)
    annotations.append({
        "image_id": f, "category_id": 1, "track_id": 0, "score": 1.0,
        "keypoints": [float(v) for v in triples.ravel()],
        "bbox": [round(float(v), 2) for v in (*lo, *(hi - lo))]})
  doc = {"info": {"description": f"synthetic subject {SUBJECT}, sequence "
                                 f"{sequence.sequence}, camera {cameras.H36M_CAMERA_IDS[0]}, "
                                 f"{sequence.fps:g} fps; made by scripts/make_coco_example.py"},
         "images": images, "annotations": annotations,
         "categories": [{"id": 1, "name": "person"}]}
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  tmp = args.out + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(doc, f, separators=(",", ":"))
  os.replace(tmp, args.out)
  print(f"wrote {args.out}: {len(images)} frames of {width} x {height}, "
        f"{os.path.getsize(args.out) / 1e3:.0f} kB")


if __name__ == "__main__":
  main()
