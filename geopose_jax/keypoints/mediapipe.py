"""MediaPipe Pose landmarks (33 per person, normalised image coordinates).

MediaPipe gives each landmark x, y in [0, 1] of the image width and height, z (depth,
unused here) and visibility in [0, 1]. It writes no file itself; we read two forms:

- JSON: `{"width": W, "height": H, "frames": [{"frame": 0, "landmarks": [{"x": .., "y": ..,
  "z": .., "visibility": ..} * 33]}, ...]}`; a frame may instead hold `"people": [[33
  landmarks], ...]` (the Tasks API's `pose_landmarks` list) for several people.
- CSV with a header `frame,landmark,x,y,z,visibility` (one row per landmark, `person` column
  optional); give width= and height=.
"""

from __future__ import annotations

import collections
import csv
import os

import numpy as np

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.keypoints import _common, people, sequence

_LAYOUT = layouts.LAYOUTS["mediapipe33"]
CSV_COLUMNS = ("frame", "landmark", "x", "y", "visibility")


def _landmarks(items, where: str) -> np.ndarray:
  if not isinstance(items, list) or len(items) != _LAYOUT.num_joints:
    count = len(items) if isinstance(items, list) else type(items).__name__
    raise InputError(f"{where}: holds {count} landmarks; MediaPipe Pose expects 33 objects "
                     f"with x, y, visibility")
  try:
    return np.asarray([[float(l["x"]), float(l["y"]), float(l.get("visibility", 1.0))]
                       for l in items])
  except (KeyError, TypeError, ValueError):
    raise InputError(f"{where}: a landmark lacks numeric 'x' and 'y'; expected "
                     f"{{'x': 0.5, 'y': 0.4, 'visibility': 0.9}}") from None


def _read_json(path: str) -> tuple[dict, object, object]:
  data = _common.load_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
    raise InputError(f"{path}: expected a JSON object with 'frames': [{{'frame', "
                     f"'landmarks'}}] (MediaPipe form, see docs/KEYPOINT_FORMATS.md)")
  per_frame = {}
  for i, item in enumerate(data["frames"]):
    where = f"{path}: frames[{i}]"
    frame = _common.frame_number(item.get("frame", i), path, f"frames[{i}].frame")
    groups = item["people"] if "people" in item else [item.get("landmarks")]
    per_frame[frame] = [_landmarks(g, where) for g in groups if g]
  return per_frame, data.get("width"), data.get("height")


def _read_csv(path: str) -> dict:
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
      raise InputError(f"{path}: CSV lacks columns {missing}; expected a header "
                       f"frame,landmark,x,y,z,visibility")
    rows = collections.defaultdict(dict)
    for line, row in enumerate(reader, start=2):
      try:
        key = (int(row["frame"]), int(row.get("person") or 0))
        rows[key][int(row["landmark"])] = (float(row["x"]), float(row["y"]),
                                           float(row["visibility"]))
      except ValueError:
        raise InputError(f"{path}: line {line}: expected integers frame, landmark and "
                         f"numbers x, y, visibility") from None
  per_frame = collections.defaultdict(list)
  for (frame, _), marks in sorted(rows.items()):
    if sorted(marks) != list(range(_LAYOUT.num_joints)):
      raise InputError(f"{path}: frame {frame} has landmarks {sorted(marks)[:5]}... "
                       f"({len(marks)}); expected 0..32")
    per_frame[frame].append(np.asarray([marks[k] for k in range(_LAYOUT.num_joints)]))
  return dict(per_frame)


def read(path: str, *, layout=None, track_id=None, width=None, height=None,
         min_confidence=sequence.DEFAULT_MIN_CONFIDENCE, name=None
         ) -> list[sequence.KeypointSequence]:
  """Reads MediaPipe landmarks (JSON or CSV) into one sequence in pixels."""
  if layout is not None and layouts.get_layout(layout).name != _LAYOUT.name:
    raise InputError(f"{path}: MediaPipe files hold layout mediapipe33, not {layout!r}")
  if path.lower().endswith(".csv"):
    per_frame = _read_csv(path)
  else:
    per_frame, file_w, file_h = _read_json(path)
    width = file_w if width is None else width
    height = file_h if height is None else height
  if not per_frame:
    raise InputError(f"{path}: holds zero frames; expected landmarks of at least one frame")
  width, height = sequence.check_image_size(width, height, path)
  scale = np.array([width, height], np.float64)
  detections = {f: [people.Detection(m[:, :2] * scale, m[:, 2], track_id=k)
                     for k, m in enumerate(marks)]
                  for f, marks in per_frame.items()}
  chosen = people.choose_people(detections, track_id=track_id, origin=path)
  frames, points, conf, _ = people.dense_track(chosen, _LAYOUT.num_joints, path)
  stem = name or os.path.splitext(os.path.basename(path))[0]
  return [sequence.make_sequence(stem, frames, points, conf, _LAYOUT, width, height,
                                 origin=path, min_confidence=min_confidence)]
