"""Finding the sequences of a raw Human3.6M download and the files that belong together.

The manual folder holds, per subject (see shared DATA_FORMATS.md):
  S1/MyPoseFeatures/D3_Positions/<Sequence>.cdf              world 3D, 32 joints, mm
  S1/Videos/<Sequence>.<camera>.mp4                          50 fps, one per camera
  S1/MySegmentsMat/ground_truth_bs/<Sequence>.<camera>.mat   foreground masks (optional)
A sequence is named by its action with an optional sub-action number ("Walking 1",
"Directions"). The release is not consistent across these folders: "TakingPhoto" and
"Photo", "WalkingDog" and "WalkDog" name the same action, so files are matched by the
canonical action and the sub-action number when the exact name is absent. The pose file's
name is the sequence id; "Directions" and "Directions 1" stay different sequences.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
from typing import Sequence

from geopose_jax.data import vocab
from geopose_jax.geometry.cameras import H36M_CAMERA_IDS
from geopose_jax.skeleton import canonical_action

_LOG = logging.getLogger(__name__)

POSE_DIR = pathlib.Path("MyPoseFeatures", "D3_Positions")
VIDEO_DIR = pathlib.Path("Videos")
MASK_DIR = pathlib.Path("MySegmentsMat", "ground_truth_bs")
# Sequences whose video is broken in the release (VideoPose3D drops the same one):
# (subject, canonical action, sub-action number or "").
KNOWN_BROKEN = frozenset({("S11", "Directions", "")})

_SUB_ACTION = re.compile(r"^(?P<action>.*?)[\s_\-]*(?P<number>\d*)$")
_CAMERA_FILE = re.compile(r"^(?P<sequence>.+)\.(?P<camera>\d{8})$")


@dataclasses.dataclass(frozen=True)
class RawSequence:
  """One sequence of one subject and its files.

  Attributes:
    subject: e.g. "S1".
    sequence: the pose file's name, e.g. "TakingPhoto 1" (the record's sequence id).
    action: the canonical action (vocab.H36M_ACTIONS).
    pose_path: the D3_Positions .cdf file.
    video_paths: 4 videos in H36M_CAMERA_IDS order.
    mask_paths: 4 mask files in that order, None where the release has none.
  """
  subject: str
  sequence: str
  action: str
  pose_path: pathlib.Path
  video_paths: tuple[pathlib.Path, ...]
  mask_paths: tuple[pathlib.Path | None, ...]


def sequence_key(name: str, origin: pathlib.Path) -> tuple[str, str]:
  """"Walking 1" -> ("Walking", "1"); "TakingPhoto" -> ("Photo", "").

  Raises:
    ValueError: naming `origin` when the name holds no Human3.6M action.
  """
  match = _SUB_ACTION.match(name.strip())
  try:
    action = canonical_action(match.group("action"))
  except ValueError as error:
    raise ValueError(f"{origin}: {name!r} is not a Human3.6M sequence name ({error}); remove "
                     "or rename the file") from error
  return action, match.group("number")


def _camera_files(folder: pathlib.Path, suffix: str) -> dict[tuple[str, str], pathlib.Path]:
  """{(sequence name, camera): path} of the `<Sequence>.<camera><suffix>` files in a folder."""
  files = {}
  if folder.is_dir():
    for path in sorted(folder.glob(f"*{suffix}")):
      match = _CAMERA_FILE.match(path.name[:-len(suffix)])
      if match and match.group("camera") in H36M_CAMERA_IDS:
        files[(match.group("sequence"), match.group("camera"))] = path
  return files


def _match(name: str, key: tuple[str, str], camera: str,
           files: dict[tuple[str, str], pathlib.Path]) -> pathlib.Path | None:
  """The file of sequence `name` and `camera`: exact name first, else the same key."""
  if (name, camera) in files:
    return files[(name, camera)]
  candidates = []
  for (other, other_camera), path in files.items():
    if other_camera != camera or other.lstrip("_").upper().startswith("ALL"):
      continue
    try:
      if sequence_key(other, path) == key:
        candidates.append(path)
    except ValueError:
      continue  # an unrelated file in the folder; only the ones asked for must parse
  if len(candidates) > 1:
    raise ValueError(f"{candidates[0].parent}: several files could be sequence {name!r} of "
                     f"camera {camera}: {[p.name for p in candidates]}; keep one")
  return candidates[0] if candidates else None


def subject_sequences(root: pathlib.Path, subject: str) -> list[RawSequence]:
  """Every usable sequence of one subject, sorted by name.

  Raises:
    ValueError: unknown subject or an unparsable name.
    FileNotFoundError: a missing folder or video, naming it.
  """
  if subject not in vocab.SUBJECTS:
    raise ValueError(f"unknown subject {subject!r} (asked for in the h36m_multiview config); "
                     f"Human3.6M subjects are {vocab.SUBJECTS}")
  folder = root / subject
  for part in (POSE_DIR, VIDEO_DIR):
    if not (folder / part).is_dir():
      raise FileNotFoundError(f"{folder / part}: no such folder; every subject needs "
                              f"{subject}/{POSE_DIR}/*.cdf and {subject}/{VIDEO_DIR}/*.mp4 "
                              "extracted from the release")
  videos = _camera_files(folder / VIDEO_DIR, ".mp4")
  masks = _camera_files(folder / MASK_DIR, ".mat")
  sequences = []
  for pose_path in sorted((folder / POSE_DIR).glob("*.cdf")):
    name = pose_path.stem
    if name.lstrip("_").upper().startswith("ALL"):  # whole-subject concatenations
      continue
    key = sequence_key(name, pose_path)
    if (subject,) + key in KNOWN_BROKEN:
      _LOG.warning("%s: skipping %s %r: its video is broken in the Human3.6M release",
                      pose_path, subject, name)
      continue
    video_paths = []
    for camera in H36M_CAMERA_IDS:
      video = _match(name, key, camera, videos)
      if video is None:
        raise FileNotFoundError(
            f"{folder / VIDEO_DIR / f'{name}.{camera}.mp4'}: no such video (nor a naming "
            f"variant of it) for the poses in {pose_path}; extract the subject's videos "
            "from the release, or remove the pose file to leave the sequence out")
      video_paths.append(video)
    mask_paths = tuple(_match(name, key, camera, masks) for camera in H36M_CAMERA_IDS)
    sequences.append(RawSequence(subject, name, key[0], pose_path, tuple(video_paths),
                                 mask_paths))
  if not sequences:
    raise FileNotFoundError(f"{folder / POSE_DIR}: holds no usable pose file (*.cdf)")
  return sequences


def find_sequences(root: pathlib.Path, subjects: Sequence[str]) -> list[RawSequence]:
  """The sequences of `subjects` under the manual folder `root`.

  Subjects absent from `root` are left out with a warning (a partial download builds the
  splits it can); at least one must be present.

  Raises:
    FileNotFoundError, ValueError: naming the folder or file and what is wrong.
  """
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"{root}: no such folder; give the extracted Human3.6M release "
                            "(the folder holding S1/, S5/, ...) as the manual folder")
  unknown = [s for s in subjects if s not in vocab.SUBJECTS]
  if unknown:
    raise ValueError(f"unknown subject(s) {unknown} in the h36m_multiview config; Human3.6M "
                     f"subjects are {vocab.SUBJECTS}")
  present = [s for s in subjects if (root / s).is_dir()]
  absent = [s for s in subjects if s not in present]
  if not present:
    raise FileNotFoundError(f"{root}: holds none of the subject folders {list(subjects)}; "
                            "give the extracted Human3.6M release as the manual folder")
  if absent:
    _LOG.warning("%s: no folder for subject(s) %s; building without them", root, absent)
  return [seq for subject in present for seq in subject_sequences(root, subject)]
