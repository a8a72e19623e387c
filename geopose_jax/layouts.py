"""2D keypoint layouts of common detectors and their maps to Human3.6M-17.

Layouts: COCO-17 (Detectron2, MMPose, rtmlib, AlphaPose's COCO model), Halpe-26 (AlphaPose),
OpenPose BODY_25, MediaPipe Pose (33 landmarks) and H36M-17 itself.

Every H36M joint is made from the source layout by one rule (the convention of the public
COCO -> Human3.6M converters used with VideoPose3D-style lifters):

- a joint the layout has (hips, knees, ankles, shoulders, elbows, wrists) is copied;
- Hip (pelvis, 0) = (LHip + RHip) / 2, or the layout's own mid-hip (BODY_25 MidHip, Halpe Hip);
- Thorax (8) = (LShoulder + RShoulder) / 2, or the layout's own neck (BODY_25 Neck, Halpe Neck);
- Spine (7) = (Hip + Thorax) / 2, from the two synthesised joints above;
- Neck/Nose (9) = Nose;
- Head (10, head top): Halpe's Head when present; otherwise x = mean x of the two eyes and two
  ears, y = LEye.y + REye.y - Nose.y, i.e. the eyes' midpoint moved up by its height above the
  nose (image y points down).

A synthesised joint's confidence is the minimum of its sources' confidences, so it is only as
trusted as its weakest source. `fill_missing` then replaces joints below a threshold (or with
non-finite or (0, 0) coordinates, the "not detected" mark of OpenPose and COCO) by linear
interpolation over the frames where they were seen, holding the first and last seen values at
the ends.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from geopose_jax import skeleton
from geopose_jax.errors import InputError

_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
_HALPE_NAMES = _COCO_NAMES + (
    "head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe",
    "right_small_toe", "left_heel", "right_heel")
_BODY25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel")
_MEDIAPIPE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index")

# Rules: ("copy", name) | ("mid", a, b) | ("head_top", nose, leye, reye, lear, rear).
# "h36m:<index>" names an H36M joint made by an earlier rule.
_LIMBS = {
    1: ("copy", "right_hip"), 2: ("copy", "right_knee"), 3: ("copy", "right_ankle"),
    4: ("copy", "left_hip"), 5: ("copy", "left_knee"), 6: ("copy", "left_ankle"),
    11: ("copy", "left_shoulder"), 12: ("copy", "left_elbow"), 13: ("copy", "left_wrist"),
    14: ("copy", "right_shoulder"), 15: ("copy", "right_elbow"), 16: ("copy", "right_wrist"),
}
_FACE_HEAD_TOP = ("head_top", "nose", "left_eye", "right_eye", "left_ear", "right_ear")
_GENERIC_RULES = {
    **_LIMBS,
    0: ("mid", "left_hip", "right_hip"),
    8: ("mid", "left_shoulder", "right_shoulder"),
    7: ("mid", "h36m:0", "h36m:8"),
    9: ("copy", "nose"),
    10: _FACE_HEAD_TOP,
}
# Evaluation order: the spine needs the pelvis and thorax first.
_ORDER = (0, 1, 2, 3, 4, 5, 6, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16)


@dataclasses.dataclass(frozen=True)
class Layout:
  """A detector's keypoint layout.

  Attributes:
    name: canonical name ('coco17', 'halpe26', 'body25', 'mediapipe33', 'h36m17').
    joint_names: (J,) names in the detector's order.
    rules: H36M joint index -> rule (see the module docstring); None for H36M-17 itself.
  """
  name: str
  joint_names: tuple[str, ...]
  rules: dict | None

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)


LAYOUTS = {
    "coco17": Layout("coco17", _COCO_NAMES, _GENERIC_RULES),
    "halpe26": Layout("halpe26", _HALPE_NAMES, {
        **_GENERIC_RULES, 0: ("copy", "hip"), 8: ("copy", "neck"), 10: ("copy", "head")}),
    "body25": Layout("body25", _BODY25_NAMES, {
        **_GENERIC_RULES, 0: ("copy", "mid_hip"), 8: ("copy", "neck")}),
    "mediapipe33": Layout("mediapipe33", _MEDIAPIPE_NAMES, _GENERIC_RULES),
    "h36m17": Layout("h36m17", skeleton.H36M_JOINT_NAMES, None),
}
# Other spellings users and files use (VideoPose3D's metadata says 'coco' or 'h36m').
_ALIASES = {
    "coco": "coco17", "coco_17": "coco17", "coco-17": "coco17", "detectron2": "coco17",
    "halpe": "halpe26", "halpe_26": "halpe26", "halpe-26": "halpe26", "alphapose": "halpe26",
    "body_25": "body25", "body-25": "body25", "openpose": "body25",
    "mediapipe": "mediapipe33", "blazepose": "mediapipe33", "mediapipe_33": "mediapipe33",
    "h36m": "h36m17", "h36m_17": "h36m17", "h36m-17": "h36m17", "human36m": "h36m17",
}


def get_layout(name: str) -> Layout:
  """The layout called `name` (canonical name or alias, any case); InputError otherwise."""
  key = str(name).strip().lower()
  key = _ALIASES.get(key, key)
  if key not in LAYOUTS:
    raise InputError(f"unknown keypoint layout {name!r}; expected one of "
                     f"{', '.join(LAYOUTS)} (or an alias: {', '.join(sorted(_ALIASES))})")
  return LAYOUTS[key]


def layout_for_joint_count(num_joints: int) -> Layout | None:
  """The one layout with `num_joints` joints (17 is COCO-17 for detector files), or None."""
  for layout in ("coco17", "halpe26", "body25", "mediapipe33"):
    if LAYOUTS[layout].num_joints == num_joints:
      return LAYOUTS[layout]
  return None


def _gather(layout: Layout, points, conf, made, name):
  if name.startswith("h36m:"):
    return made[int(name[5:])]
  j = layout.joint_names.index(name)
  return points[..., j, :], conf[..., j]


def to_h36m(points: np.ndarray, confidence: np.ndarray, layout: Layout | str
            ) -> tuple[np.ndarray, np.ndarray]:
  """Maps keypoints of `layout` to Human3.6M-17 (rules in the module docstring).

  Args:
    points: (..., J, 2) pixel coordinates, J = layout.num_joints.
    confidence: (..., J) per-joint confidence.
    layout: a Layout or its name.

  Returns:
    (..., 17, 2) float64 points and (..., 17) confidences (the min of each joint's sources).
  """
  layout = get_layout(layout) if isinstance(layout, str) else layout
  points = np.asarray(points, np.float64)
  conf = np.asarray(confidence, np.float64)
  if points.shape[-2] != layout.num_joints or conf.shape != points.shape[:-1]:
    raise InputError(f"keypoints of shape {points.shape} with confidences {conf.shape} do "
                     f"not fit layout {layout.name} ({layout.num_joints} joints)")
  if layout.rules is None:
    return points.copy(), conf.copy()
  made: dict[int, tuple[np.ndarray, np.ndarray]] = {}
  for target in _ORDER:
    rule = layout.rules[target]
    sources = [_gather(layout, points, conf, made, n) for n in rule[1:]]
    c = np.min(np.stack([s[1] for s in sources]), axis=0)
    if rule[0] == "copy":
      p = sources[0][0]
    elif rule[0] == "mid":
      p = (sources[0][0] + sources[1][0]) / 2.0
    elif rule[0] == "head_top":
      nose, leye, reye, lear, rear = (s[0] for s in sources)
      x = (leye[..., 0] + reye[..., 0] + lear[..., 0] + rear[..., 0]) / 4.0
      y = leye[..., 1] + reye[..., 1] - nose[..., 1]
      p = np.stack([x, y], axis=-1)
    else:
      raise AssertionError(rule)
    made[target] = (p, c)
  out_points = np.stack([made[j][0] for j in range(skeleton.H36M_NUM_JOINTS)], axis=-2)
  out_conf = np.stack([made[j][1] for j in range(skeleton.H36M_NUM_JOINTS)], axis=-1)
  return out_points, out_conf


def missing_mask(points: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
  """(N, J) True where a joint is not usable: confidence below `threshold`, a non-finite
  coordinate, or exactly (0, 0) (how OpenPose and COCO mark an undetected joint)."""
  points = np.asarray(points)
  bad_xy = ~np.isfinite(points).all(axis=-1) | (points == 0).all(axis=-1)
  return bad_xy | ~(np.asarray(confidence) >= threshold)


def interpolate_missing(points: np.ndarray, missing: np.ndarray, frames: np.ndarray | None = None,
                        joint_names=skeleton.H36M_JOINT_NAMES, origin: str = "keypoints"
                        ) -> np.ndarray:
  """Replaces missing joints by linear interpolation over time, holding the ends.

  Args:
    points: (N, J, 2) coordinates.
    missing: (N, J) bool, True where points must be replaced.
    frames: (N,) frame numbers (interpolation is in frame number, so gaps count); default
      0..N-1.
    joint_names: names for the error message.
    origin: the file, for the error message.

  Returns:
    (N, J, 2) float64 points with every missing entry filled.

  Raises:
    InputError: a joint that is missing in every frame.
  """
  points = np.array(points, np.float64)
  missing = np.asarray(missing, bool)
  t = np.arange(len(points), dtype=np.float64) if frames is None else np.asarray(frames,
                                                                                np.float64)
  for j in range(points.shape[1]):
    seen = ~missing[:, j]
    if not seen.any():
      raise InputError(f"{origin}: joint {joint_names[j]!r} is missing or below the "
                       f"confidence threshold in every one of {len(points)} frames; give a "
                       f"file where it is detected, or lower the threshold")
    if seen.all():
      continue
    for d in range(points.shape[2]):
      # np.interp holds the first and last seen values beyond the ends.
      points[~seen, j, d] = np.interp(t[~seen], t[seen], points[seen, j, d])
  return points
