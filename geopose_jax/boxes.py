"""Per-frame person boxes for image input: box files, boxes from keypoint files, short gaps.

A box is (x, y, w, h) in pixels of the input frames, frames numbered from 0 in the order
`images.open_frames` yields them. `load_boxes` gives one box per frame of the input:

  * a box file: CSV with the header `frame,x,y,w,h`, or JSON `{"<frame>": [x, y, w, h]}` /
    `[{"frame": 0, "bbox": [x, y, w, h]}, ...]`;
  * a keypoint file `keypoints.read_keypoints` reads (COCO / AlphaPose results, OpenPose,
    MediaPipe, VideoPose3D, arrays): the detector's box where the file has one (COCO
    `bbox`, AlphaPose `box`), else the extent of the person's joints, widened.

Frames without a box in a gap of at most `max_gap` frames are filled: between two boxes
linearly, before the first or after the last with the nearest one. Longer gaps, boxes for
frames the input does not have, and boxes that miss the image are one InputError each.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from geopose_jax.errors import InputError

# A keypoint extent runs from joint to joint; the builders add a body radius (140 mm) to
# the pelvis-to-farthest-joint distance (about 900 mm standing) before their 1.08 margin,
# about 15 % of the half side: the extent's half side is widened by that much.
KEYPOINT_BOX_PAD = 0.15
DEFAULT_MAX_GAP = 5
_MAX_LISTED = 5


def read_box_file(path: str | os.PathLike) -> dict[int, np.ndarray]:
  """{frame: (4,) box (x, y, w, h)} of a box file (CSV or JSON, see the module docstring)."""
  path = os.fspath(path)
  boxes: dict[int, np.ndarray] = {}
  if path.lower().endswith(".csv"):
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      if not {"frame", "x", "y", "w", "h"} <= set(reader.fieldnames or []):
        raise InputError(f"{path}: expected a CSV header frame,x,y,w,h")
      for line, row in enumerate(reader, start=2):
        try:
          boxes[int(row["frame"])] = np.array([float(row[k]) for k in "xywh"])
        except (TypeError, ValueError):
          raise InputError(f"{path}: line {line}: expected numbers frame,x,y,w,h") from None
  else:
    from geopose_jax.keypoints import _common  # pylint: disable=g-import-not-at-top
    data = _common.load_json(path)
    if not isinstance(data, (dict, list)):
      raise InputError(f"{path}: expected a JSON object {{\"<frame>\": [x, y, w, h]}} or a "
                       f"list of {{\"frame\": 0, \"bbox\": [x, y, w, h]}}")
    items = (data.items() if isinstance(data, dict) else
             ((d.get("frame"), d.get("bbox")) for d in data if isinstance(d, dict)))
    for frame, box in items:
      try:
        box = np.asarray(box if box is not None else [], np.float64).reshape(-1)
      except (TypeError, ValueError):
        box = np.zeros(0)
      if box.size != 4:
        raise InputError(f"{path}: frame {frame!r}: box {box.tolist()} is not [x, y, w, h]")
      boxes[_common.frame_number(frame, path, "frame")] = box
  if not boxes:
    raise InputError(f"{path}: holds zero boxes; expected one [x, y, w, h] per frame")
  return boxes


def extent_boxes(points_px: np.ndarray, pad: float = KEYPOINT_BOX_PAD) -> np.ndarray:
  """(N, J, 2) joints -> (N, 4) boxes (x, y, w, h): their extent, each side widened by
  `pad` times its half length about the extent's centre."""
  points = np.asarray(points_px, np.float64)
  lo, hi = points.min(axis=-2), points.max(axis=-2)
  centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0 * (1.0 + pad)
  return np.concatenate([centre - half, 2.0 * half], axis=-1)


def is_box_file(path: str) -> bool:
  """Whether `path` is a box file rather than a keypoint file (judged from its start)."""
  if path.lower().endswith(".csv"):
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
      header = next(csv.reader(f), [])
    return {"frame", "x", "y", "w", "h"} <= {h.strip() for h in header}
  if not path.lower().endswith(".json"):
    return False
  from geopose_jax.keypoints import detect_format  # pylint: disable=g-import-not-at-top
  try:
    detect_format(path)
  except InputError:
    return True
  return False


def keypoint_boxes(path: str, width: int, height: int, *, format: str | None = None,
                   layout: str | None = None, track_id: int | None = None,
                   min_confidence: float = 0.3) -> dict[int, np.ndarray]:
  """{frame: box} of the one person a keypoint file follows (see the module docstring)."""
  from geopose_jax.keypoints import read_keypoints  # pylint: disable=g-import-not-at-top
  sequences = read_keypoints(path, format=format, layout=layout, track_id=track_id,
                             width=width, height=height, min_confidence=min_confidence)
  if len(sequences) != 1:
    raise InputError(f"{path}: holds {len(sequences)} keypoint sequences; the boxes of an "
                     f"image input come from one (give that video's keypoints only)")
  seq, = sequences
  boxes = seq.boxes if seq.boxes is not None else extent_boxes(seq.pose_2d_px)
  return dict(zip(seq.frames.tolist(), np.asarray(boxes, np.float64)))


def _ranges(frames: np.ndarray) -> str:
  """'3, 10-14, 20' for sorted frame numbers (the first few runs)."""
  runs, start = [], 0
  for i in range(1, len(frames) + 1):
    if i == len(frames) or frames[i] != frames[i - 1] + 1:
      a, b = int(frames[start]), int(frames[i - 1])
      runs.append(f"{a}" if a == b else f"{a}-{b}")
      start = i
  more = f" (and {len(runs) - _MAX_LISTED} more runs)" if len(runs) > _MAX_LISTED else ""
  return ", ".join(runs[:_MAX_LISTED]) + more


def fill_gaps(boxes: dict[int, np.ndarray], num_frames: int, max_gap: int, origin: str
              ) -> tuple[np.ndarray, np.ndarray]:
  """(num_frames, 4) boxes and (num_frames,) bool filled: every frame 0..num_frames-1.

  A gap of at most `max_gap` frames is filled (linearly between boxes, with the nearest box
  at either end); a longer one, or a box for a frame the input lacks, is an InputError.
  """
  frames = np.array(sorted(boxes), np.int64)
  if frames[0] < 0 or frames[-1] >= num_frames:
    bad = frames[(frames < 0) | (frames >= num_frames)]
    raise InputError(f"{origin}: boxes for frames {_ranges(bad)}, but the input has "
                     f"{num_frames} frames (0-{num_frames - 1}); expected the boxes of this "
                     f"input's frames, numbered from 0")
  stacked = np.stack([np.asarray(boxes[f], np.float64) for f in frames])
  every = np.arange(num_frames)
  filled = ~np.isin(every, frames)
  # Gap length of each missing frame: the run of missing frames it belongs to.
  after = np.searchsorted(frames, every)            # index of the next boxed frame
  next_frame = np.where(after < len(frames), frames[np.minimum(after, len(frames) - 1)],
                        num_frames)
  prev_frame = np.where(after > 0, frames[np.maximum(after - 1, 0)], -1)
  gap = next_frame - prev_frame - 1
  too_long = filled & (gap > max_gap)
  if too_long.any():
    raise InputError(f"{origin}: no box for frames {_ranges(every[too_long])}; gaps longer "
                     f"than --config.predict.max_box_gap={max_gap} frames are not filled: "
                     f"give boxes for them or raise the limit")
  out = np.stack([np.interp(every, frames, stacked[:, k]) for k in range(4)], axis=-1)
  return out, filled


def load_boxes(path: str | os.PathLike, num_frames: int, width: int, height: int, *,
               format: str | None = None, layout: str | None = None,
               track_id: int | None = None, min_confidence: float = 0.3,
               max_gap: int = DEFAULT_MAX_GAP) -> tuple[np.ndarray, np.ndarray]:
  """(num_frames, 4) boxes (x, y, w, h) of a box or keypoint file for an input of
  `num_frames` frames of width x height pixels, and (num_frames,) bool: filled in a gap."""
  from geopose_jax.keypoints.sequence import check_boxes_inside  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.exists(path):
    raise InputError(f"--config.predict.boxes={path}: not found; expected a box file or a "
                     f"keypoint file of the input's frames")
  if not format and os.path.isfile(path) and is_box_file(path):
    boxes = read_box_file(path)
  else:
    boxes = keypoint_boxes(path, width, height, format=format, layout=layout,
                           track_id=track_id, min_confidence=min_confidence)
  frames = np.array(sorted(boxes))
  check_boxes_inside(np.stack([boxes[f] for f in frames]), width, height, frames, path)
  return fill_gaps(boxes, num_frames, int(max_gap), path)
