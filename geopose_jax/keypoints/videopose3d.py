"""VideoPose3D's custom 2D file (what its in-the-wild pipeline writes).

An `.npz` with two pickled objects:
- `positions_2d`: {video_name: {"custom": [array (N, J, 2)]}} (a (N, J, 3) array with a
  confidence column is accepted too);
- `metadata`: {"layout_name": "coco" | "h36m" | ..., "num_joints": J,
  "keypoints_symmetry": [[left], [right]], "video_metadata": {video_name: {"w": W, "h": H}}}.
Each video becomes one sequence named after it.
"""

from __future__ import annotations

import numpy as np

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.keypoints import sequence


def _item(npz, key: str, path: str):
  if key not in npz.files:
    raise InputError(f"{path}: no '{key}' array; a VideoPose3D custom file holds "
                     f"'positions_2d' and 'metadata'")
  value = npz[key]
  return value.item() if value.dtype == object and value.shape == () else value


def is_videopose3d(npz) -> bool:
  return "positions_2d" in npz.files and "metadata" in npz.files


def read(path: str, *, layout=None, track_id=None, width=None, height=None,
         min_confidence=sequence.DEFAULT_MIN_CONFIDENCE, name=None
         ) -> list[sequence.KeypointSequence]:
  """One sequence per video of a VideoPose3D custom `.npz`."""
  del track_id  # the file holds one person per video
  try:
    npz = np.load(path, allow_pickle=True)
  except (OSError, ValueError) as error:
    raise InputError(f"{path}: not a readable .npz ({error})") from None
  with npz:
    positions = _item(npz, "positions_2d", path)
    metadata = _item(npz, "metadata", path)
  if not isinstance(positions, dict) or not isinstance(metadata, dict):
    raise InputError(f"{path}: 'positions_2d' and 'metadata' must be pickled dicts "
                     f"(np.savez(positions_2d=dict, metadata=dict))")
  layout_name = layout or metadata.get("layout_name")
  if layout_name is None:
    raise InputError(f"{path}: metadata has no 'layout_name'; pass "
                     f"--config.predict.layout=<name> (docs/KEYPOINT_FORMATS.md)")
  lay = layouts.get_layout(layout_name)
  declared = metadata.get("num_joints")
  if declared is not None and int(declared) != lay.num_joints:
    raise InputError(f"{path}: metadata num_joints = {declared} but layout {lay.name} has "
                     f"{lay.num_joints} joints")
  videos = metadata.get("video_metadata", {})
  if not positions:
    raise InputError(f"{path}: 'positions_2d' holds no video (zero frames)")
  out = []
  for video, views in positions.items():
    where = f"{path}: positions_2d[{video!r}]"
    arrays = views.get("custom") if isinstance(views, dict) else None
    if not arrays:
      raise InputError(f"{where} has no 'custom' list; expected {{'custom': [array "
                       f"(frames, {lay.num_joints}, 2)]}}")
    array = np.asarray(arrays[0], np.float64)
    if array.ndim != 3 or array.shape[1] != lay.num_joints or array.shape[2] not in (2, 3):
      raise InputError(f"{where}['custom'][0] has shape {array.shape}; layout {lay.name} "
                       f"expects (frames, {lay.num_joints}, 2) or (frames, "
                       f"{lay.num_joints}, 3)")
    conf = array[..., 2] if array.shape[2] == 3 else np.ones(array.shape[:2])
    size = videos.get(video, {})
    w = size.get("w", width) if width is None else width
    h = size.get("h", height) if height is None else height
    label = name if name and len(positions) == 1 else video
    out.append(sequence.make_sequence(
        label, np.arange(len(array)), array[..., :2], conf, lay, w, h,
        origin=f"{path} [{video}]", min_confidence=min_confidence))
  return out
