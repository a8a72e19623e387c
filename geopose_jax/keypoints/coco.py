"""COCO keypoint results JSON (COCO-17) and AlphaPose's Halpe-26 JSON.

Both are one JSON list with one object per detected person:
`{"image_id": 12 | "12.jpg", "category_id": 1, "keypoints": [x1, y1, s1, ...], "score": 0.9,
"bbox" | "box": [x, y, w, h], "track_id" | "idx": 3}`. 17 triples are COCO-17, 26 Halpe-26.
The COCO dataset form `{"images": [...], "annotations": [...]}` is read too; its images give
the frame size and file names.
"""

from __future__ import annotations

import collections
import os

import numpy as np

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.keypoints import _common, people, sequence

_TRACK_FIELDS = ("track_id", "idx")
_BOX_FIELDS = ("bbox", "box")


def _track_id(entry: dict):
  for field in _TRACK_FIELDS:
    value = entry.get(field)
    if isinstance(value, list):  # AlphaPose's tracker writes [id] in some versions
      value = value[0] if value else None
    if value is not None:
      try:
        return int(value)
      except (TypeError, ValueError):
        return None
  return None


def _detection(entry, index: int, layout, origin: str) -> people.Detection:
  where = f"{origin}: entry {index}"
  if not isinstance(entry, dict) or "keypoints" not in entry:
    raise InputError(f"{where} has no 'keypoints'; expected objects with image_id and "
                     f"keypoints [x, y, score] * joints")
  values = np.asarray(entry["keypoints"], np.float64).reshape(-1)
  if values.size != 3 * layout.num_joints:
    raise InputError(f"{where}: 'keypoints' holds {values.size} numbers; layout "
                     f"{layout.name} expects {layout.num_joints} x (x, y, score) = "
                     f"{3 * layout.num_joints}")
  triples = values.reshape(layout.num_joints, 3)
  box = None
  for field in _BOX_FIELDS:
    if entry.get(field) is not None:
      box = np.asarray(entry[field], np.float64).reshape(-1)
      if box.size != 4:
        raise InputError(f"{where}: '{field}' holds {box.size} numbers; expected "
                         f"[x, y, width, height]")
      break
  return people.Detection(triples[:, :2], triples[:, 2], box, _track_id(entry))


def read(path: str, *, layout=None, track_id=None, width=None, height=None,
         min_confidence=sequence.DEFAULT_MIN_CONFIDENCE, name=None
         ) -> list[sequence.KeypointSequence]:
  """Reads a COCO-style keypoint JSON file into one sequence (the chosen person)."""
  data = _common.load_json(path)
  images = {}
  if isinstance(data, dict) and "annotations" in data:
    for image in data.get("images", []):
      images[image.get("id")] = image
    entries = data["annotations"]
  elif isinstance(data, list):
    entries = data
  else:
    raise InputError(f"{path}: expected a JSON list of person objects (COCO results) or a "
                     f"dict with 'annotations'; found {type(data).__name__}")
  if not entries:
    raise InputError(f"{path}: holds zero detections; expected at least one frame")
  if layout is None:
    first = entries[0].get("keypoints") if isinstance(entries[0], dict) else None
    count = len(first) // 3 if isinstance(first, list) else 0
    layout = layouts.layout_for_joint_count(count)
    if layout is None:
      raise InputError(f"{path}: entry 0 'keypoints' holds {count} joints; expected 17 "
                       f"(COCO) or 26 (Halpe), or pass --config.predict.layout=<name> "
                       f"(docs/KEYPOINT_FORMATS.md)")
  layout = layouts.get_layout(layout) if isinstance(layout, str) else layout
  per_frame = collections.defaultdict(list)
  for i, entry in enumerate(entries):
    if not isinstance(entry, dict) or "image_id" not in entry:
      raise InputError(f"{path}: entry {i} has no 'image_id'; expected the frame's id")
    # Dataset-form image ids are arbitrary; a video's frame number is in the file name.
    image = images.get(entry["image_id"]) or {}
    key = image.get("file_name", entry["image_id"])
    per_frame[_common.frame_number(key, path)].append(_detection(entry, i, layout, path))
  if images and (width is None or height is None):
    sizes = {(im.get("width"), im.get("height")) for im in images.values()}
    if len(sizes) == 1:
      width, height = sizes.pop()
  chosen = people.choose_people(dict(per_frame), track_id=track_id, origin=path)
  frames, points, conf, boxes = people.dense_track(chosen, layout.num_joints, path)
  stem = name or os.path.splitext(os.path.basename(path))[0]
  return [sequence.make_sequence(stem, frames, points, conf, layout, width, height,
                                 origin=path, boxes=boxes, min_confidence=min_confidence)]
