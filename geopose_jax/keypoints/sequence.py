"""The common result of every keypoint reader: one person's H36M-17 2D track over frames."""

from __future__ import annotations

import dataclasses

import numpy as np

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.geometry import cameras

DEFAULT_MIN_CONFIDENCE = 0.3


@dataclasses.dataclass(frozen=True)
class KeypointSequence:
  """One person's 2D keypoints over a sequence, mapped to Human3.6M-17.

  Attributes:
    name: sequence name (a video name, file stem, ...), free text.
    frames: (N,) int frame numbers, increasing.
    pose_2d_px: (N, 17, 2) float32 pixel coordinates (x right, y down), gaps interpolated.
    confidence: (N, 17) float32 confidences as the detector gave them (min of the sources
      for synthesised joints; 0 where a joint was absent).
    interpolated: (N, 17) bool, True where pose_2d_px was filled in over time.
    width, height: image size in pixels.
    source_layout: the layout the file held ('coco17', 'body25', ...).
    boxes: (N, 4) float32 person boxes (x, y, w, h) in pixels, or None when the file has none.
    source: the file or folder read.
  """
  name: str
  frames: np.ndarray
  pose_2d_px: np.ndarray
  confidence: np.ndarray
  interpolated: np.ndarray
  width: int
  height: int
  source_layout: str
  boxes: np.ndarray | None = None
  source: str = ""

  @property
  def num_frames(self) -> int:
    return len(self.frames)


def normalized_pose_2d(sequence: KeypointSequence) -> np.ndarray:
  """(N, 17, 2) float32 coordinates as the training data has them.

  The h36m_poses builder stores `normalize_screen_coordinates(px, float32(w), float32(h))`
  of float32 pixels: x / w * 2 - 1 and y / w * 2 - h / w, so x spans [-1, 1] and the aspect
  ratio is kept. This repeats that computation with the same dtypes.
  """
  pixels = np.asarray(sequence.pose_2d_px, np.float32)
  return np.asarray(cameras.normalize_screen_coordinates(
      pixels, np.float32(sequence.width), np.float32(sequence.height)), np.float32)


def check_image_size(width, height, origin: str) -> tuple[int, int]:
  """Positive integer (width, height), or InputError saying how to give them."""
  if width is None or height is None:
    raise InputError(f"{origin}: the file does not give the image size; pass "
                     f"--config.predict.width=W --config.predict.height=H (pixels)")
  try:
    w, h = int(width), int(height)
  except (TypeError, ValueError):
    raise InputError(f"{origin}: image size must be integers, got width={width!r}, "
                     f"height={height!r}") from None
  if w <= 0 or h <= 0:
    raise InputError(f"{origin}: image size must be positive, got {w} x {h}")
  return w, h


def check_boxes_inside(boxes: np.ndarray, width: int, height: int, frames: np.ndarray,
                       origin: str) -> None:
  """InputError naming the first (x, y, w, h) box that does not overlap the image at all."""
  boxes = np.asarray(boxes, np.float64)
  x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
  outside = (x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0) | (w <= 0) | (h <= 0)
  if outside.any():
    i = int(np.argmax(outside))
    raise InputError(f"{origin}: frame {int(frames[i])}: box (x, y, w, h) = "
                     f"{tuple(round(float(v), 1) for v in boxes[i])} lies outside the "
                     f"{width} x {height} image; expected boxes in pixels of that image")


def make_sequence(name: str, frames, points, confidence, layout, width, height, *,
                  origin: str, boxes=None, min_confidence: float = DEFAULT_MIN_CONFIDENCE
                  ) -> KeypointSequence:
  """Validates a reader's raw arrays, maps them to H36M-17 and fills gaps over time.

  Args:
    name: sequence name.
    frames: (N,) frame numbers.
    points: (N, J, 2) pixels in `layout`.
    confidence: (N, J) confidences (ones where the file has none).
    layout: Layout or name.
    width, height: image size in pixels.
    origin: the file, named in errors.
    boxes: optional (N, 4) boxes (x, y, w, h).
    min_confidence: joints below it are interpolated over time.
  """
  layout = layouts.get_layout(layout) if isinstance(layout, str) else layout
  points = np.asarray(points, np.float64)
  confidence = np.asarray(confidence, np.float64)
  frames = np.asarray(frames, np.int64)
  if points.ndim != 3 or points.shape[0] == 0:
    raise InputError(f"{origin}: sequence {name!r} has no frames (keypoints of shape "
                     f"{points.shape}); expected (frames >= 1, {layout.num_joints}, 2)")
  if points.shape[1:] != (layout.num_joints, 2):
    raise InputError(f"{origin}: sequence {name!r} has keypoints of shape {points.shape}; "
                     f"layout {layout.name} expects (frames, {layout.num_joints}, 2)")
  if frames.shape != (len(points),) or (np.diff(frames) <= 0).any():
    raise InputError(f"{origin}: sequence {name!r}: frame numbers must be {len(points)} "
                     f"increasing integers, got shape {frames.shape}")
  width, height = check_image_size(width, height, origin)
  flat = points.reshape(len(points), -1)
  if not np.isfinite(points).any() or not np.nan_to_num(flat).any():
    raise InputError(f"{origin}: sequence {name!r}: every coordinate is NaN or zero; "
                     f"expected pixel coordinates of detected joints")
  confident_nan = ~np.isfinite(points).all(axis=-1) & (confidence >= min_confidence)
  if confident_nan.any():
    f, j = np.argwhere(confident_nan)[0]
    raise InputError(f"{origin}: sequence {name!r}, frame {int(frames[f])}: joint "
                     f"{layout.joint_names[j]!r} has NaN coordinates but confidence "
                     f"{confidence[f, j]:.3g}; mark undetected joints with confidence 0")
  if boxes is not None:
    check_boxes_inside(boxes, width, height, frames, origin)
  # Non-finite coordinates are missing; zeroing them keeps them out of the arithmetic.
  bad = ~np.isfinite(points).all(axis=-1)
  points = np.where(bad[..., None], 0.0, points)
  confidence = np.where(bad, 0.0, np.nan_to_num(confidence, nan=0.0))
  # A synthesised joint is missing when any of its sources is (conf -1 propagates by min).
  source_missing = layouts.missing_mask(points, confidence, min_confidence)
  h36m_points, usable = layouts.to_h36m(points, np.where(source_missing, -1.0, 1.0), layout)
  missing = usable < 0
  h36m_conf = layouts.to_h36m(points, confidence, layout)[1]
  filled = layouts.interpolate_missing(h36m_points, missing, frames,
                                       origin=f"{origin} (sequence {name!r})")
  return KeypointSequence(
      name=str(name), frames=frames, pose_2d_px=filled.astype(np.float32),
      confidence=np.clip(h36m_conf, 0.0, None).astype(np.float32),
      interpolated=missing, width=width, height=height, source_layout=layout.name,
      boxes=None if boxes is None else np.asarray(boxes, np.float32), source=origin)

