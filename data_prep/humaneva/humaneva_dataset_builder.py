"""`humaneva`: HumanEva-I (Sigal et al. 2010) poses from VideoPose3D's preprocessed files.

Source (manual folder): VideoPose3D's `data_3d_humaneva15.npz` (`positions_3d` = {"Train/S1"
| "Validate/S1" | ...: {"Walking 1 chunk0": (N, 15, 3) world metres}}) and
`data_2d_humaneva15_gt.npz` (`positions_2d` = the same keys -> [C1, C2, C3] (N', 15, 2)
pixels of 640 x 480 frames). VideoPose3D's prepare_data_humaneva.py cuts each recording at
the HumanEva Train/Validate frame boundary and splits the mocap where it drops out into
"chunk<k>" pieces; those pieces are our sequences. "Unlabeled/..." entries (no 3D) are left
out.

Joints: HumanEva's 15 (skeleton.HUMANEVA_JOINT_NAMES; root = pelvis, 0). Maps to and from
H36M-17: skeleton.h36m_to_humaneva / humaneva_to_h36m.

Builder configs: `walk_jog_box` (default; the actions RIE and VideoPose3D evaluate on:
Walking, Jog, Box) and `all_actions` (also ThrowCatch and Gestures).
Splits: train = the "Train/" chunks of S1-S3, validate = the "Validate/" chunks (HumanEva's
own validation frames, the usual test set of lifting papers).

Record (one per subject, chunk and camera; N frames): subject ("S1"), sequence ("Walking 1
chunk0"), action ("Walk", "Jog", "Box", "ThrowCatch", "Gestures"), camera_id ("C1"),
camera_index, num_frames, pose_2d_px (N, 15, 2), pose_2d (N, 15, 2) normalised screen
coordinates, pose_3d_cam (N, 15, 3) camera frame METRES, pose_3d_world (N, 15, 3) METRES,
camera {R (3, 3) world->camera, t (3,) centre in world mm, res (2,)}.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.h36m_poses import readers as h36m_readers
from data_prep.humaneva import calibration
from geopose_jax import skeleton
from geopose_jax.errors import DatasetError
from geopose_jax.geometry import cameras as cameras_lib

NAME = "humaneva"
NPZ_3D = "data_3d_humaneva15.npz"
NPZ_2D = "data_2d_humaneva15_gt.npz"
SUBJECTS = ("S1", "S2", "S3")
SPLITS = {"Train": "train", "Validate": "validate"}
ACTIONS = ("Walk", "Jog", "Box", "ThrowCatch", "Gestures")
_ACTION_ALIASES = {"walking": "Walk", "walk": "Walk", "jog": "Jog", "box": "Box",
                   "throwcatch": "ThrowCatch", "gestures": "Gestures"}
NUM_JOINTS = skeleton.HUMANEVA_NUM_JOINTS
# The checked loader of VideoPose3D's pickled-dict .npz files, shared with h36m_poses.
_load_npz_dict = h36m_readers._load_npz_dict  # pylint: disable=protected-access


def canonical_action(sequence: str) -> str:
  """"Walking 1 chunk0" -> "Walk" (sub-action number and chunk dropped)."""
  name = re.sub(r"\s*chunk\d+$", "", sequence.strip())
  name = re.sub(r"[\s_]*\d+$", "", name)
  key = re.sub(r"[^a-z]", "", name.lower())
  if key not in _ACTION_ALIASES:
    raise DatasetError(f"unknown HumanEva-I action in sequence {sequence!r}; expected one of "
                       f"{ACTIONS}")
  return _ACTION_ALIASES[key]


@dataclasses.dataclass(eq=False)
class HumanEvaConfig(tfds.core.BuilderConfig):
  """actions: the actions kept; npz_3d / npz_2d: file names in the manual folder (or
  absolute paths)."""
  actions: tuple[str, ...] = ("Walk", "Jog", "Box")
  npz_3d: str = NPZ_3D
  npz_2d: str = NPZ_2D


@dataclasses.dataclass(frozen=True)
class Chunk:
  split: str
  subject: str
  sequence: str
  world_m: np.ndarray          # (N, 15, 3)
  views_px: tuple[np.ndarray, ...]  # 3 x (N, 15, 2)


def read_chunks(path_3d: pathlib.Path, path_2d: pathlib.Path, actions) -> list[Chunk]:
  """Reads and checks both files; returns the labelled chunks of `actions`."""
  for path in (path_3d, path_2d):
    if not path.is_file():
      raise DatasetError(f"{path}: no such file; the humaneva manual folder needs VideoPose3D's "
                         f"{NPZ_3D} and {NPZ_2D} (made by its data/prepare_data_humaneva.py)")
  try:
    positions_3d = _load_npz_dict(path_3d, "positions_3d")
    positions_2d = _load_npz_dict(path_2d, "positions_2d")
  except (ValueError, FileNotFoundError) as error:
    raise DatasetError(str(error)) from error
  chunks = []
  for key in sorted(positions_3d):
    split, _, subject = str(key).rpartition("/")
    if split.startswith("Unlabeled"):
      continue
    if split not in SPLITS or subject not in SUBJECTS:
      raise DatasetError(f"{path_3d}: unexpected subject key {key!r}; VideoPose3D's HumanEva "
                         "files use Train/S1 .. Validate/S3")
    if key not in positions_2d:
      raise DatasetError(f"{path_2d}: has no 2D poses of {key!r}, which {path_3d} has")
    for sequence in sorted(positions_3d[key]):
      if canonical_action(sequence) not in actions:
        continue
      where = f"{path_3d} [{key}][{sequence!r}]"
      world = np.asarray(positions_3d[key][sequence], np.float32)
      if world.ndim != 3 or world.shape[1:] != (NUM_JOINTS, 3):
        raise DatasetError(f"{where}: 3D pose has shape {world.shape}; expected (N, 15, 3)")
      if not np.all(np.isfinite(world)):
        raise DatasetError(f"{where}: 3D pose holds non-finite values")
      views = positions_2d[key].get(sequence)
      if views is None or len(views) != len(calibration.CAMERA_IDS):
        raise DatasetError(f"{path_2d} [{key}][{sequence!r}]: expected a list of 3 cameras "
                           f"{calibration.CAMERA_IDS} of (N, 15, 2) pixels")
      checked = []
      for camera, view in zip(calibration.CAMERA_IDS, views):
        view = None if view is None else np.asarray(view, np.float32)
        if view is None or view.ndim != 3 or view.shape[1:] != (NUM_JOINTS, 2) \
            or len(view) < len(world):
          raise DatasetError(f"{path_2d} [{key}][{sequence!r}] {camera}: expected (N, 15, 2) "
                             f"pixels with N >= {len(world)}, got "
                             f"{None if view is None else view.shape}")
        checked.append(view[:len(world)])
      chunks.append(Chunk(SPLITS[split], subject, str(sequence), world, tuple(checked)))
  return chunks


def chunk_records(chunk: Chunk):
  """Yields (key, record) for the three cameras of one chunk (module docstring)."""
  rotations, centres = calibration.cameras(chunk.subject)
  width, height = calibration.RESOLUTION
  world_mm = chunk.world_m.astype(np.float64) * 1000.0
  for index, camera_id in enumerate(calibration.CAMERA_IDS):
    cam_mm = (world_mm - centres[index]) @ rotations[index].T
    pixels = chunk.views_px[index]
    yield f"{chunk.split}/{chunk.subject}/{chunk.sequence}/{camera_id}", {
        "subject": chunk.subject, "sequence": chunk.sequence,
        "action": canonical_action(chunk.sequence), "camera_id": camera_id,
        "camera_index": index, "num_frames": len(pixels), "pose_2d_px": pixels,
        "pose_2d": np.asarray(cameras_lib.normalize_screen_coordinates(
            pixels, np.float32(width), np.float32(height)), np.float32),
        "pose_3d_cam": (cam_mm / 1000.0).astype(np.float32),
        "pose_3d_world": chunk.world_m,
        "camera": {"R": rotations[index].astype(np.float32),
                   "t": centres[index].astype(np.float32),
                   "res": np.asarray(calibration.RESOLUTION, np.float32)},
    }


class Builder(array_record_builder.ArrayRecordBuilder):
  """HumanEva-I 2D/3D poses (15 joints) from VideoPose3D's files."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      HumanEvaConfig(name="walk_jog_box", description="Walking, Jog and Box (the default)."),
      HumanEvaConfig(name="all_actions", actions=ACTIONS, description="All five actions."),
  ]
  DEFAULT_CONFIG_NAME = "walk_jog_box"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  HumanEva-I is licence-gated (http://humaneva.is.tue.mpg.de/): download it, then make
  VideoPose3D's files with its data/prepare_data_humaneva.py (--convert-3d), and put
  {NPZ_3D} and {NPZ_2D} in the manual folder:
    python -m data_prep.build humaneva --manual_dir /path/to/folder
  """

  def _info(self) -> tfds.core.DatasetInfo:
    f32 = np.float32
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, homepage="http://humaneva.is.tue.mpg.de/",
        features=tfds.features.FeaturesDict({
            "subject": tfds.features.Text(), "sequence": tfds.features.Text(),
            "action": tfds.features.Text(), "camera_id": tfds.features.Text(),
            "camera_index": tfds.features.Scalar(dtype=np.int32),
            "num_frames": tfds.features.Scalar(dtype=np.int32),
            "pose_2d_px": tfds.features.Tensor(shape=(None, NUM_JOINTS, 2), dtype=f32),
            "pose_2d": tfds.features.Tensor(shape=(None, NUM_JOINTS, 2), dtype=f32),
            "pose_3d_cam": tfds.features.Tensor(shape=(None, NUM_JOINTS, 3), dtype=f32),
            "pose_3d_world": tfds.features.Tensor(shape=(None, NUM_JOINTS, 3), dtype=f32),
            "camera": tfds.features.FeaturesDict({
                "R": tfds.features.Tensor(shape=(3, 3), dtype=f32),
                "t": tfds.features.Tensor(shape=(3,), dtype=f32),
                "res": tfds.features.Tensor(shape=(2,), dtype=f32),
            }),
        }))

  def _path(self, dl_manager, name: str) -> pathlib.Path:
    path = pathlib.Path(name).expanduser()
    if path.is_absolute():
      return path
    try:
      return pathlib.Path(os.fspath(dl_manager.manual_dir)) / name
    except AssertionError as error:  # TFDS's way of saying the folder is missing or empty
      raise DatasetError(f"{error}\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}") from error

  def _split_generators(self, dl_manager):
    config = self.builder_config
    chunks = read_chunks(self._path(dl_manager, config.npz_3d),
                         self._path(dl_manager, config.npz_2d), config.actions)
    generators = {split: self._generate_examples([c for c in chunks if c.split == split])
                  for split in SPLITS.values() if any(c.split == split for c in chunks)}
    if not generators:
      raise DatasetError(f"{config.npz_3d}: holds no labelled chunk of {config.actions}")
    return generators

  def _generate_examples(self, chunks):
    for chunk in chunks:
      yield from chunk_records(chunk)
