"""Finding the sequences of a raw Human3.6M download and the files that belong together.

The manual folder holds, per subject (see shared DATA_FORMATS.md):
  S1/MyPoseFeatures/D3_Positions/<Sequence>.cdf              world 3D, 32 joints, mm
  S1/Videos/<Sequence>.<camera>.mp4                          50 fps, one per camera
  S1/MySegmentsMat/ground_truth_bs/<Sequence>.<camera>.mat   foreground masks (optional)
A sequence is named by its action with an optional sub-action number ("Walking 1",
"Directions"). The release is not consistent across these folders: "TakingPhoto" and
"Photo", "WalkingDog" and "WalkDog" name the same action, and sub-action numbers may be
present in one folder and absent in another, so files are paired with a pose file by
name, else by canonical action and sub-action number, else as the only file of that
action left over (`_pair_files`). The pose file's name is the sequence id; "Directions"
and "Directions 1" stay different sequences.
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


def _is_concatenation(name: str) -> bool:
  """Whole-subject concatenations ("_ALL", "ALL 1") of some releases are not sequences."""
  return name.lstrip("_").upper().startswith("ALL")


def _pair_files(subject: str, poses: dict[str, tuple[str, str]],
                files: dict[tuple[str, str], pathlib.Path]
                ) -> dict[tuple[str, str], pathlib.Path]:
  """Pairs pose files with per-camera files (videos or masks) despite naming variants.

  Per camera, in this order: the same name; else the same canonical action and sub-action
  number ("TakingPhoto 1" / "Photo 1"); else, when exactly one pose file and exactly one
  file of an action are left over, those two ("Walking" / "Walking 1", with a warning).

  Args:
    subject: for the known-broken list and messages.
    poses: pose file name -> its key (sequence_key).
    files: (name, camera) -> path.

  Returns:
    (pose name, camera) -> path for the pairs found.

  Raises:
    ValueError: several files fit one pose file equally.
  """
  pairs = {}
  for camera in H36M_CAMERA_IDS:
    here = {}
    for (name, file_camera), path in files.items():
      if file_camera != camera or _is_concatenation(name):
        continue
      try:
        key = sequence_key(name, path)
      except ValueError:
        continue  # an unrelated file in the folder; only pose files must parse
      if (subject,) + key not in KNOWN_BROKEN:
        here[name] = (key, path)
    left = dict(poses)
    for name in list(left):
      if name in here:
        pairs[(name, camera)] = here.pop(name)[1]
        del left[name]
    for name, key in list(left.items()):
      same = [other for other, (other_key, _) in here.items() if other_key == key]
      if len(same) > 1:
        raise ValueError(f"{here[same[0]][1].parent}: several files could be sequence "
                         f"{name!r} of camera {camera}: {sorted(same)}; keep one")
      if same:
        pairs[(name, camera)] = here.pop(same[0])[1]
        del left[name]
    for action in {key[0] for key in left.values()}:
      names = [name for name, key in left.items() if key[0] == action]
      others = [other for other, (other_key, _) in here.items() if other_key[0] == action]
      if len(names) == 1 and len(others) == 1:
        path = here.pop(others[0])[1]
        _LOG.warning("%s: pairing the %s poses %r with %s (the only %s file left)",
                     path.parent, subject, names[0], path.name, action)
        pairs[(names[0], camera)] = path
  return pairs


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
  pose_paths = {}
  for pose_path in sorted((folder / POSE_DIR).glob("*.cdf")):
    name = pose_path.stem
    if _is_concatenation(name):
      continue
    if (subject,) + sequence_key(name, pose_path) in KNOWN_BROKEN:
      _LOG.warning("%s: skipping %s %r: its video is broken in the Human3.6M release",
                   pose_path, subject, name)
      continue
    pose_paths[name] = pose_path
  if not pose_paths:
    raise FileNotFoundError(f"{folder / POSE_DIR}: holds no usable pose file (*.cdf)")
  keys = {name: sequence_key(name, path) for name, path in pose_paths.items()}
  videos = _pair_files(subject, keys, _camera_files(folder / VIDEO_DIR, ".mp4"))
  masks = _pair_files(subject, keys, _camera_files(folder / MASK_DIR, ".mat"))
  sequences = []
  for name, pose_path in pose_paths.items():
    video_paths = []
    for camera in H36M_CAMERA_IDS:
      if (name, camera) not in videos:
        raise FileNotFoundError(
            f"{folder / VIDEO_DIR / f'{name}.{camera}.mp4'}: no such video (nor a naming "
            f"variant of it) for the poses in {pose_path}; extract the subject's videos "
            "from the release, or remove the pose file to leave the sequence out")
      video_paths.append(videos[(name, camera)])
    mask_paths = tuple(masks.get((name, camera)) for camera in H36M_CAMERA_IDS)
    sequences.append(RawSequence(subject, name, keys[name][0], pose_path, tuple(video_paths),
                                 mask_paths))
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
