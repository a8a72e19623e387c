"""Per-sequence 3D results as `poses_3d.npz` and `poses_3d.json`.

Both hold: `joint_names` (H36M-17), `frames` (N,) int, `poses_3d_mm` (N, 17, 3) camera-frame
millimetres (x right, y down, z forward), `confidence` (N, 17) of the 2D input (keypoint
input only), and any extra arrays given (e.g. SMPL `theta` (N, 72), `beta` (N, 10),
`vertices` (N, 6890, 3); for image input the person `boxes_xywh` (N, 4)),
and `metadata`: what produced the poses and how to read them (where the root is, how a
scale-free pose was sized), a JSON object (in the npz as a JSON string).
The JSON holds the same as nested lists (vertices are left out of the JSON: too large).
"""

from __future__ import annotations

import json
import os

import numpy as np

from geopose_jax import skeleton
from geopose_jax.errors import InputError

_JSON_SKIP = ("vertices",)


def write_poses(folder: str | os.PathLike, frames: np.ndarray, poses_3d_mm: np.ndarray,
                confidence: np.ndarray | None, extras: dict[str, np.ndarray] | None = None,
                name: str = "", metadata: dict | None = None) -> tuple[str, str]:
  """Writes folder/poses_3d.npz and folder/poses_3d.json; returns their paths.

  Args:
    frames: (N,) frame numbers.
    poses_3d_mm: (N, 17, 3) camera-frame mm.
    confidence: (N, 17) of the 2D input; None for image input (then not written).
    extras: more (N, ...) arrays, stored under their names.
    name: the sequence name, stored as `sequence`.
    metadata: JSON-serialisable facts about the poses, stored as `metadata`.
  """
  frames = np.asarray(frames, np.int64)
  poses = np.asarray(poses_3d_mm, np.float32)
  n = len(frames)
  conf_shape = None if confidence is None else np.shape(confidence)
  if poses.shape != (n, 17, 3) or conf_shape not in (None, (n, 17)):
    raise InputError(f"poses export: expected poses (N, 17, 3) and confidence (N, 17) for "
                     f"N = {n} frames; got {poses.shape} and {conf_shape}")
  arrays = {"frames": frames, "poses_3d_mm": poses}
  if confidence is not None:
    arrays["confidence"] = np.asarray(confidence, np.float32)
  for key, value in (extras or {}).items():
    value = np.asarray(value)
    if key in arrays or key in ("joint_names", "sequence", "metadata") or len(value) != n:
      raise InputError(f"poses export: extra array {key!r} of shape {value.shape} clashes "
                       f"with a standard name or has not {n} frames")
    arrays[key] = value
  folder = os.fspath(folder)
  npz_path = os.path.join(folder, "poses_3d.npz")
  json_path = os.path.join(folder, "poses_3d.json")
  metadata = dict(metadata or {})
  np.savez_compressed(npz_path, joint_names=np.asarray(skeleton.H36M_JOINT_NAMES),
                      sequence=np.asarray(name), metadata=np.asarray(json.dumps(metadata)),
                      **arrays)
  doc = {"sequence": name, "joint_names": list(skeleton.H36M_JOINT_NAMES),
         "units": "mm", "frame": "camera (x right, y down, z forward)", "metadata": metadata}
  for key, value in arrays.items():
    if key not in _JSON_SKIP:
      doc[key] = np.round(value, 3).tolist() if value.dtype.kind == "f" else value.tolist()
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(doc, f, separators=(",", ":"))
  return npz_path, json_path
