"""Plain Human3.6M-17 2D arrays: `.npy`, `.npz` or `.json`.

- `.npy`: (N, 17, 2) pixels, or (N, 17, 3) with a confidence column; give width= and height=.
- `.npz`: `keypoints` (or `pose_2d_px`, or the only array) as above, optional `confidence`
  (N, 17), `frames` (N,), `width`, `height` scalars.
- `.json`: {"keypoints": [[[x, y], ...17], ...N], optional "confidence", "frames", "width",
  "height"}.
"""

from __future__ import annotations

import os

import numpy as np

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.keypoints import _common, sequence

_ARRAY_KEYS = ("keypoints", "pose_2d_px")


def _fields(path: str) -> dict:
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext == ".npy":
      return {"keypoints": np.load(path, allow_pickle=False)}
    if ext == ".npz":
      with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
      key = next((k for k in _ARRAY_KEYS if k in data), None)
      if key is None and len(data) == 1:
        key = next(iter(data))
      if key is None:
        raise InputError(f"{path}: no 'keypoints' array among {sorted(data)}; expected "
                         f"'keypoints' (N, 17, 2) with optional confidence, frames, width, "
                         f"height")
      data["keypoints"] = data.pop(key)
      return data
  except (OSError, ValueError) as error:
    raise InputError(f"{path}: not a readable numpy file ({error})") from None
  data = _common.load_json(path)
  if not isinstance(data, dict) or "keypoints" not in data:
    raise InputError(f"{path}: expected a JSON object with 'keypoints' (N x 17 x [x, y])")
  return data


def _scalar(value):
  return None if value is None else np.asarray(value).item()


def read(path: str, *, layout=None, track_id=None, width=None, height=None,
         min_confidence=sequence.DEFAULT_MIN_CONFIDENCE, name=None
         ) -> list[sequence.KeypointSequence]:
  """Reads one plain keypoint array (H36M-17 unless layout= says otherwise)."""
  del track_id
  data = _fields(path)
  lay = layouts.get_layout(layout or "h36m17")
  try:
    keypoints = np.asarray(data["keypoints"], np.float64)
  except (TypeError, ValueError):
    raise InputError(f"{path}: 'keypoints' is not a rectangular array of numbers; expected "
                     f"(N, {lay.num_joints}, 2)") from None
  if keypoints.ndim != 3 or keypoints.shape[1:] not in ((lay.num_joints, 2),
                                                        (lay.num_joints, 3)):
    if keypoints.size == 0:
      raise InputError(f"{path}: 'keypoints' holds zero frames; expected (N >= 1, "
                       f"{lay.num_joints}, 2)")
    raise InputError(f"{path}: 'keypoints' has shape {keypoints.shape}; layout {lay.name} "
                     f"expects (N, {lay.num_joints}, 2) or (N, {lay.num_joints}, 3)")
  if "confidence" in data:
    conf = np.asarray(data["confidence"], np.float64)
    if conf.shape != keypoints.shape[:2]:
      raise InputError(f"{path}: 'confidence' has shape {conf.shape}; expected "
                       f"{keypoints.shape[:2]}")
  elif keypoints.shape[2] == 3:
    conf = keypoints[..., 2]
  else:
    conf = np.ones(keypoints.shape[:2])
  frames = np.asarray(data.get("frames", np.arange(len(keypoints))), np.int64)
  if frames.shape != (len(keypoints),) or (np.diff(frames) <= 0).any():
    raise InputError(f"{path}: 'frames' must be {len(keypoints)} increasing integers")
  w = _scalar(data.get("width")) if width is None else width
  h = _scalar(data.get("height")) if height is None else height
  stem = name or os.path.splitext(os.path.basename(path))[0]
  return [sequence.make_sequence(stem, frames, keypoints[..., :2], conf, lay, w, h,
                                 origin=path, min_confidence=min_confidence)]
