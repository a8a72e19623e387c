"""Choosing one person per frame from multi-person detections, and dense frame tracks."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from geopose_jax.errors import InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Detection:
  """One detected person in one frame.

  Attributes:
    points: (J, 2) pixels.
    confidence: (J,) per-joint confidence.
    box: (4,) (x, y, w, h) pixels, or None (then the confident keypoints' extent is used).
    track_id: the file's person/track id, or None.
  """
  points: np.ndarray
  confidence: np.ndarray
  box: np.ndarray | None = None
  track_id: int | None = None


def keypoint_box(points: np.ndarray, confidence: np.ndarray) -> np.ndarray:
  """(4,) (x, y, w, h) extent of the joints with positive confidence and finite coordinates."""
  good = (confidence > 0) & np.isfinite(points).all(axis=-1) & ~(points == 0).all(axis=-1)
  if not good.any():
    return np.zeros(4)
  lo, hi = points[good].min(axis=0), points[good].max(axis=0)
  return np.concatenate([lo, hi - lo])


def _area(det: Detection) -> float:
  box = det.box if det.box is not None else keypoint_box(det.points, det.confidence)
  return float(box[2] * box[3])


def choose_people(per_frame: dict[int, list[Detection]], *, track_id: int | None,
                  origin: str) -> dict[int, Detection]:
  """One detection per frame: the one with `track_id`, or else the largest box.

  Frames without the chosen person are left out (the caller fills them). The choice is
  logged once per sequence.
  """
  chosen: dict[int, Detection] = {}
  crowded = 0
  for frame, people in per_frame.items():
    if len(people) > 1:
      crowded += 1
    if track_id is not None:
      matching = [p for p in people if p.track_id == track_id]
      if matching:
        chosen[frame] = matching[0]
    elif people:
      chosen[frame] = max(people, key=_area)
  if track_id is not None:
    if not chosen:
      ids = sorted({p.track_id for ps in per_frame.values() for p in ps
                    if p.track_id is not None})
      raise InputError(f"{origin}: no person has track id {track_id}; the file has track "
                       f"ids {ids or 'none'} (give one of them, or no track id for the "
                       f"largest person)")
    log.info("%s: following track id %d in %d of %d frames", origin, track_id, len(chosen),
             len(per_frame))
  elif crowded:
    log.info("%s: %d frames hold several people; took the largest box in each (pass a track "
             "id to follow one person)", origin, crowded)
  return chosen


def dense_track(chosen: dict[int, Detection], num_joints: int, origin: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
  """Stacks chosen detections over every frame from the first to the last.

  Frames without a detection get confidence 0 (filled later by interpolation).

  Returns:
    frames (N,), points (N, J, 2), confidence (N, J), boxes (N, 4) or None when no
    detection had a box.
  """
  if not chosen:
    raise InputError(f"{origin}: holds no person in any frame; expected at least one "
                     f"detection")
  first, last = min(chosen), max(chosen)
  frames = np.arange(first, last + 1)
  points = np.zeros((len(frames), num_joints, 2))
  conf = np.zeros((len(frames), num_joints))
  has_box = any(d.box is not None for d in chosen.values())
  boxes = np.full((len(frames), 4), np.nan) if has_box else None
  for frame, det in chosen.items():
    i = frame - first
    points[i], conf[i] = det.points, det.confidence
    if has_box:
      boxes[i] = det.box if det.box is not None else keypoint_box(det.points, det.confidence)
  if has_box:
    # A frame without a box keeps the nearest earlier (or later) one.
    seen = np.isfinite(boxes[:, 0])
    idx = np.where(seen, np.arange(len(frames)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(seen))
    boxes = boxes[idx]
  return frames, points, conf, boxes
