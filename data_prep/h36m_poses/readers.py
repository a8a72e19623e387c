"""Readers of the Human3.6M pose sources: VideoPose3D .npz files and the raw .cdf release.

Each reader yields `PoseSequence`s: one (subject, sequence) with its world 3D pose and, per
camera, the 2D pose in pixels. Everything is validated while reading; a problem raises one
error naming the file and what is wrong, before any record is written.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
import zipfile
from typing import Sequence

import numpy as np

from geopose_jax.data import vocab
from geopose_jax.errors import InputError
from geopose_jax.geometry.cameras import H36M_CAMERA_IDS
from geopose_jax.skeleton import H36M_32_TO_17

NUM_JOINTS = 17
NUM_MOCAP_JOINTS = 32


@dataclasses.dataclass(frozen=True)
class PoseSequence:
  """One recorded sequence of one subject, seen by the 4 Human3.6M cameras.

  Attributes:
    subject: e.g. "S1".
    sequence: the name the source uses, e.g. "Walking 1" (canonicalised later).
    pose_3d_world: (N, 17, 3) float32 world coordinates in metres.
    pose_2d_px: 4 arrays (N, 17, 2) float32 pixels, in H36M_CAMERA_IDS order, or None when
      the 2D is to be obtained by projecting the 3D pose.
    origin: the file(s) the sequence came from, for error messages.
    action: the canonical action name, or None to derive it from `sequence`.
  """
  subject: str
  sequence: str
  pose_3d_world: np.ndarray
  pose_2d_px: tuple[np.ndarray, ...] | None
  origin: str
  action: str | None = None


def _check_subject(subject: str, origin: str) -> None:
  if subject not in vocab.SUBJECTS:
    raise ValueError(f"{origin}: unknown subject {subject!r}; Human3.6M subjects are "
                     f"{vocab.SUBJECTS}")


def _check_finite(array: np.ndarray, origin: str, what: str) -> None:
  if not np.all(np.isfinite(array)):
    bad = int(np.sum(~np.isfinite(array)))
    raise ValueError(f"{origin}: {what} holds {bad} non-finite values (NaN/Inf); the file is "
                     "corrupt or was written wrongly")


def _keep_17_joints(pose: np.ndarray, origin: str, what: str) -> np.ndarray:
  """(N, 32, 3) mocap or (N, 17, 3) -> (N, 17, 3) float32."""
  if pose.ndim != 3 or pose.shape[-1] != 3 or pose.shape[1] not in (NUM_MOCAP_JOINTS, NUM_JOINTS):
    raise ValueError(f"{origin}: {what} has shape {pose.shape}; expected (N, 32, 3) "
                     "(Human3.6M mocap joints) or (N, 17, 3)")
  if pose.shape[1] == NUM_MOCAP_JOINTS:
    pose = pose[:, list(H36M_32_TO_17)]
  return np.asarray(pose, np.float32)


def _load_npz_dict(path: pathlib.Path, key: str) -> dict:
  """Loads the pickled dict stored under `key` of a VideoPose3D .npz file."""
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file; give the path of a VideoPose3D-format .npz "
                            "(e.g. data_3d_h36m.npz / data_2d_h36m_gt.npz)")
  if not zipfile.is_zipfile(path):
    # np.load would otherwise take any non-zip file for a pickle and run it.
    raise InputError(f"{path}: not a readable .npz (zip) file; the file is corrupt, truncated or of "
                     "another kind: give a VideoPose3D-format .npz")
  try:
    # The format stores dicts, which numpy can only keep pickled; the zip check above
    # ensures only an .npz member is ever unpickled.
    with np.load(path, allow_pickle=True) as archive:
      if key not in archive.files:
        raise ValueError(f"{path}: has no array {key!r} (it holds {archive.files}); is this "
                         "a VideoPose3D-format file of the right kind?")
      value = archive[key]
  except (zipfile.BadZipFile, EOFError, OSError) as error:
    raise ValueError(f"{path}: not a readable .npz file ({error}); the file is corrupt or "
                     "truncated, download or write it again") from error
  if value.dtype != object or value.shape != ():
    raise ValueError(f"{path}: {key!r} should be a pickled dict subject -> action -> ..., got "
                     f"an array of shape {value.shape} and dtype {value.dtype}")
  value = value.item()
  if not isinstance(value, dict):
    raise ValueError(f"{path}: {key!r} should be a dict subject -> action -> ..., got "
                     f"{type(value).__name__}")
  return value


def read_npz(npz_3d: str | pathlib.Path, npz_2d: str | pathlib.Path | None
             ) -> list[PoseSequence]:
  """Reads VideoPose3D-format 3D and (optionally) 2D files.

  Args:
    npz_3d: file with `positions_3d` = {subject: {action: (N, 32, 3) metres world}}.
    npz_2d: file with `positions_2d` = {subject: {action: [4 x (N', 17, 2) pixels]}}, N' >= N
      (2D is truncated to the 3D length); any 2D source of this shape works (ground truth,
      CPN, Detectron, a user's detector). None: 2D is projected from the 3D pose.

  Returns:
    Sequences sorted by (subject, sequence).

  Raises:
    FileNotFoundError, ValueError: naming the file and what is wrong with it.
  """
  path_3d = pathlib.Path(npz_3d).expanduser()
  positions_3d = _load_npz_dict(path_3d, "positions_3d")
  positions_2d = None
  path_2d = None
  if npz_2d:
    path_2d = pathlib.Path(npz_2d).expanduser()
    positions_2d = _load_npz_dict(path_2d, "positions_2d")
    for subject in positions_2d:
      _check_subject(str(subject), f"{path_2d}")
  sequences = []
  for subject in sorted(positions_3d):
    _check_subject(str(subject), f"{path_3d}")
    actions = positions_3d[subject]
    if positions_2d is not None and subject not in positions_2d:
      raise ValueError(f"{path_2d}: has no 2D poses of subject {subject!r}, which {path_3d} "
                       f"has; the 2D file holds subjects {sorted(positions_2d)}")
    for sequence in sorted(actions):
      where = f"{path_3d} [{subject}][{sequence!r}]"
      world = _keep_17_joints(np.asarray(actions[sequence]), where, "the 3D pose")
      _check_finite(world, where, "the 3D pose")
      views = None
      if positions_2d is not None:
        views = _read_npz_views(positions_2d[subject], subject, sequence, len(world), path_2d)
      sequences.append(PoseSequence(str(subject), str(sequence), world, views,
                                    f"{path_3d}" + (f" + {path_2d}" if path_2d else "")))
    if positions_2d is not None:
      extra = sorted(set(positions_2d[subject]) - set(actions))
      if extra:
        logging.warning("%s: 2D sequences of %s without 3D are skipped: %s", path_2d, subject,
                        extra)
  return sequences


def _read_npz_views(actions_2d: dict, subject: str, sequence: str, num_frames: int,
                    path: pathlib.Path) -> tuple[np.ndarray, ...]:
  where = f"{path} [{subject}][{sequence!r}]"
  if sequence not in actions_2d:
    raise ValueError(f"{path}: has no 2D poses of {subject} {sequence!r}, which the 3D file "
                     "has; use a 2D file made for the same 3D data")
  views = actions_2d[sequence]
  if len(views) != len(H36M_CAMERA_IDS):
    raise ValueError(f"{where}: holds {len(views)} cameras; expected a list of "
                     f"{len(H36M_CAMERA_IDS)} in the order {H36M_CAMERA_IDS}")
  result = []
  for camera, view in enumerate(views):
    view = np.asarray(view)
    if view.ndim != 3 or view.shape[1:] != (NUM_JOINTS, 2):
      raise ValueError(f"{where} camera {camera}: 2D pose has shape {view.shape}; expected "
                       f"(N, {NUM_JOINTS}, 2) pixels")
    if len(view) < num_frames:
      raise ValueError(f"{where} camera {camera}: 2D has {len(view)} frames, fewer than the "
                       f"{num_frames} of the 3D pose")
    view = np.asarray(view[:num_frames], np.float32)  # 2D may run longer than the mocap
    _check_finite(view, f"{where} camera {camera}", "the 2D pose")
    result.append(view)
  return tuple(result)


# Raw release: "S1/MyPoseFeatures/D3_Positions/Walking 1.cdf" and
# "S1/MyPoseFeatures/D2_Positions/Walking 1.54138969.cdf".
_D3_DIR = pathlib.Path("MyPoseFeatures", "D3_Positions")
_D2_DIR = pathlib.Path("MyPoseFeatures", "D2_Positions")


def read_cdf_pose(path: pathlib.Path, dims: int) -> np.ndarray:
  """Variable "Pose" (1, N, 32 * dims) of a raw .cdf file -> (N, 32, dims) float32."""
  import cdflib  # only the raw-data preparation needs it
  if not path.is_file():
    raise FileNotFoundError(
        f"{path}: no such file; the raw Human3.6M layout is "
        "S<n>/MyPoseFeatures/{D3_Positions,D2_Positions}/<Action>[.<camera>].cdf")
  try:
    pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"))
  except Exception as error:  # cdflib raises many kinds on damaged files
    raise ValueError(f"{path}: cannot read variable 'Pose' ({type(error).__name__}: {error}); "
                     "the file is corrupt or not a Human3.6M pose .cdf") from error
  pose = pose.reshape(pose.shape[-2:]) if pose.ndim == 3 and pose.shape[0] == 1 else pose
  if pose.ndim != 2 or pose.shape[1] != NUM_MOCAP_JOINTS * dims:
    raise ValueError(f"{path}: 'Pose' has shape {pose.shape}; expected (1, N, "
                     f"{NUM_MOCAP_JOINTS * dims})")
  pose = pose.reshape(len(pose), NUM_MOCAP_JOINTS, dims).astype(np.float32)
  _check_finite(pose, str(path), "'Pose'")
  return pose


def read_cdf(root: str | pathlib.Path, subjects: Sequence[str] | None = None
             ) -> list[PoseSequence]:
  """Reads the raw release's D3_Positions (world mm) and D2_Positions (pixels) files.

  Args:
    root: the folder holding S1/, S5/, ... as extracted from the Human3.6M download.
    subjects: the subjects to read; each must be present. None: every Human3.6M subject
      folder found under `root`.

  Returns:
    Sequences sorted by (subject, sequence); 3D converted to metres, 17 joints kept.
  """
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"{root}: no such folder; point it at the extracted Human3.6M "
                            "release (the folder holding S1/, S5/, ...)")
  if subjects is None:
    subjects = [s for s in vocab.SUBJECTS if (root / s).is_dir()]
    if not subjects:
      raise FileNotFoundError(f"{root}: holds none of the subject folders {vocab.SUBJECTS}")
  sequences = []
  for subject in subjects:
    _check_subject(subject, str(root))
    folder = root / subject / _D3_DIR
    if not folder.is_dir():
      raise FileNotFoundError(f"{folder}: no such folder; every subject needs "
                              f"{subject}/{_D3_DIR}/*.cdf")
    for path_3d in sorted(folder.glob("*.cdf")):
      name = path_3d.stem
      if re.match(r"^_?ALL", name):  # whole-subject concatenations in some releases
        continue
      world = read_cdf_pose(path_3d, 3)[:, list(H36M_32_TO_17)] / 1000.0
      views = []
      for camera in H36M_CAMERA_IDS:
        pose_2d = read_cdf_pose(root / subject / _D2_DIR / f"{name}.{camera}.cdf", 2)
        if len(pose_2d) < len(world):
          raise ValueError(f"{root / subject / _D2_DIR / f'{name}.{camera}.cdf'}: "
                           f"{len(pose_2d)} frames, fewer than the {len(world)} of {path_3d}")
        views.append(pose_2d[:len(world), list(H36M_32_TO_17)])
      sequences.append(PoseSequence(subject, name, world.astype(np.float32), tuple(views),
                                    str(path_3d)))
  return sequences
