"""OpenPose per-frame JSON folders (BODY_25).

OpenPose's `--write_json DIR` writes one `<video>_<frame:012d>_keypoints.json` per frame:
`{"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c] * 25, ...}]}`.
Undetected joints are (0, 0, 0). The frame number is the last group of digits of the name.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import tqdm

from geopose_jax import layouts
from geopose_jax.errors import InputError
from geopose_jax.keypoints import _common, people, sequence


def frame_files(folder: str) -> list[str]:
  """The `*.json` files of an OpenPose output folder, sorted by name."""
  return sorted(glob.glob(os.path.join(folder, "*.json")))


def read(path: str, *, layout=None, track_id=None, width=None, height=None,
         min_confidence=sequence.DEFAULT_MIN_CONFIDENCE, name=None
         ) -> list[sequence.KeypointSequence]:
  """Reads an OpenPose JSON folder (or one frame's JSON file) into one sequence."""
  files = frame_files(path) if os.path.isdir(path) else [path]
  if not files:
    raise InputError(f"{path}: folder holds no *.json files; expected OpenPose "
                     f"'*_keypoints.json' frames (zero frames)")
  layout = layouts.get_layout(layout or "body25")
  per_frame = {}
  # Long videos give thousands of files: show progress past a few hundred.
  for order, file in enumerate(tqdm.tqdm(files, desc="reading OpenPose frames", unit="file",
                                         disable=len(files) < 500, leave=False)):
    data = _common.load_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
      raise InputError(f"{file}: no 'people' list; expected OpenPose JSON "
                       f"{{'people': [{{'pose_keypoints_2d': [...]}}]}}")
    try:
      frame = _common.frame_number(os.path.basename(file), file, "file name")
    except InputError:
      frame = order
    detections = []
    for k, person in enumerate(data["people"]):
      values = np.asarray(person.get("pose_keypoints_2d", []), np.float64).reshape(-1)
      if values.size != 3 * layout.num_joints:
        raise InputError(f"{file}: people[{k}].pose_keypoints_2d holds {values.size} "
                         f"numbers; layout {layout.name} expects {layout.num_joints} x "
                         f"(x, y, c) = {3 * layout.num_joints}")
      triples = values.reshape(layout.num_joints, 3)
      pid = person.get("person_id", [-1])
      pid = pid[0] if isinstance(pid, list) and pid else pid
      pid = None if pid in (None, -1) else int(pid)
      detections.append(people.Detection(triples[:, :2], triples[:, 2], None, pid))
    if frame in per_frame:
      raise InputError(f"{file}: frame number {frame} also comes from another file of "
                       f"{path}; expected one file per frame")
    per_frame[frame] = detections
  chosen = people.choose_people(per_frame, track_id=track_id, origin=path)
  frames, points, conf, _ = people.dense_track(chosen, layout.num_joints, path)
  stem = name or os.path.basename(os.path.normpath(path))
  return [sequence.make_sequence(stem, frames, points, conf, layout, width, height,
                                 origin=path, min_confidence=min_confidence)]
