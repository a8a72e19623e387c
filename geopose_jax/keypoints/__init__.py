"""Users' 2D keypoints in the common detector formats, as H36M-17 sequences.

    from geopose_jax import keypoints
    for seq in keypoints.read_keypoints("alphapose-results.json", width=1920, height=1080):
      pose_2d = keypoints.normalized_pose_2d(seq)   # (N, 17, 2), as the training data

The formats are described in docs/KEYPOINT_FORMATS.md.
"""

from __future__ import annotations

import os

from geopose_jax.keypoints import arrays, coco, mediapipe, openpose, videopose3d
from geopose_jax.keypoints.formats import FORMATS, check_format, detect_format
from geopose_jax.keypoints.sequence import (DEFAULT_MIN_CONFIDENCE, KeypointSequence,
                                            normalized_pose_2d)

_READERS = {
    "videopose3d": videopose3d.read,
    "coco": coco.read,
    "halpe": coco.read,
    "openpose": openpose.read,
    "mediapipe": mediapipe.read,
    "array": arrays.read,
}
_FORMAT_LAYOUT = {"halpe": "halpe26"}


def read_keypoints(path: str | os.PathLike, *, format: str | None = None,
                   layout: str | None = None, track_id: int | None = None,
                   width: int | None = None, height: int | None = None,
                   min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                   name: str | None = None) -> list[KeypointSequence]:
  """Reads a keypoint file or folder into H36M-17 sequences (one per video it holds).

  Args:
    path: the file (.npz, .npy, .json, .csv) or OpenPose folder.
    format: force one of FORMATS instead of detecting it.
    layout: force the joint layout (e.g. 'coco17' for a plain array file).
    track_id: follow this person; default the largest box in each frame.
    width, height: image size, for files that do not hold it (COCO results, .npy).
    min_confidence: joints below it are interpolated over time.
    name: sequence name (default from the file or the video names it holds).

  Raises:
    InputError: one line naming the file, the field and the expected form.
  """
  path = os.fspath(path)
  fmt = check_format(format) if format else detect_format(path)
  layout = layout or _FORMAT_LAYOUT.get(fmt)
  return _READERS[fmt](path, layout=layout, track_id=track_id, width=width, height=height,
                       min_confidence=min_confidence, name=name)


__all__ = ["FORMATS", "KeypointSequence", "detect_format", "normalized_pose_2d",
           "read_keypoints"]
