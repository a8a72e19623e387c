"""`mpi_inf_3dhp`: MPI-INF-3DHP (Mehta et al., 3DV 2017) poses and test-set crops.

Builder configs (the manual folder is the release as downloaded; see readers.py):
  test        (default) one record per test sequence TS1..TS6, split "test";
  test_crops  one record per valid test frame with a 128 x 128 crop, split "test";
  train       one record per (subject, sequence, camera) of the training set, 14 cameras,
              split "train";
  train_8cams the same with the 8 chest-height cameras 0, 1, 2, 4, 5, 6, 7, 8 that most
              lifting papers train on.

Joints: the 17-joint test layout mapped to Human3.6M-17 (skeleton.MPI3DHP_TO_H36M; the
training set's 28 joints are first reduced to those 17 by name).

Pose record (N frames):
  subject ("TS1".. / "S1"..), sequence ("TS1".. / "Seq1", "Seq2"), camera_index, setting
  ("studio", "outdoor", "training"), num_frames, pose_2d_px (N, 17, 2) pixels, pose_2d
  (N, 17, 2) normalised screen coordinates (x / w * 2 - [1, h / w]), pose_3d_cam (N, 17, 3)
  annot3, camera frame, METRES, pose_3d_univ (N, 17, 3) univ_annot3, METRES, valid (N,)
  bool (valid_frame; all True in training), activity (N,) int32 1..7 (0 in training),
  camera {f (2,), c (2,), res (2,) = (width, height)}.
Crop record (one view, laid out as the multi-view records with V = 1, so the same decoder
reads it): images (1, 128, 128, 3) PNG, K (1, 3, 3) crop intrinsics, R (1, 3, 3) identity
and t (1, 3) zero (the world frame is the camera frame), pose_3d_world (17, 3) mm,
pose_3d_cam / pose_3d_univ (1, 17, 3) mm, pose_2d_px (1, 17, 2), pose_2d_crop (1, 17, 2)
(annot2 in crop pixels), subject, action (the activity's name), sequence, frame (0-based),
activity, valid.
Crops use the synthetic default's framing (data_prep/synthetic_multiview/records.py): a
square box centred on the pinhole-projected pelvis whose half side covers the projected
joints plus a 140 mm body radius, x 1.08, cut with data_prep/crops.py. The outdoor
sequences' lens distortion is not undone (see readers.OUTDOOR).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep import crops
from data_prep.mpi_inf_3dhp import readers
from data_prep.synthetic_multiview import features as multiview_record
from data_prep.synthetic_multiview import records as synthetic_records
from geopose_jax.errors import DatasetError
from geopose_jax.geometry import cameras as cameras_lib
from geopose_jax.protocols import mpi_inf_3dhp as protocol

NAME = "mpi_inf_3dhp"
CROP_SIZE = multiview_record.CROP_SIZE
CHEST_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
# The synthetic default's framing, shared so that every crop dataset frames bodies alike.
_BODY_PAD_MM = synthetic_records._BODY_PAD_MM  # pylint: disable=protected-access
_BOX_SCALE = synthetic_records._BOX_SCALE  # pylint: disable=protected-access


@dataclasses.dataclass(eq=False)
class Mpi3dhpConfig(tfds.core.BuilderConfig):
  """source: 'test' or 'train'; crops: one cropped record per valid frame (test only);
  cameras: the training cameras kept."""
  source: str = "test"
  crops: bool = False
  cameras: tuple[int, ...] = tuple(range(readers.NUM_TRAIN_CAMERAS))


def pose_features() -> tfds.features.FeaturesDict:
  f32 = np.float32
  return tfds.features.FeaturesDict({
      "subject": tfds.features.Text(),
      "sequence": tfds.features.Text(),
      "camera_index": tfds.features.Scalar(dtype=np.int32),
      "setting": tfds.features.Text(doc="studio (TS1-4), outdoor (TS5-6) or training"),
      "num_frames": tfds.features.Scalar(dtype=np.int32),
      "pose_2d_px": tfds.features.Tensor(shape=(None, 17, 2), dtype=f32),
      "pose_2d": tfds.features.Tensor(shape=(None, 17, 2), dtype=f32,
                                      doc="normalised screen coordinates"),
      "pose_3d_cam": tfds.features.Tensor(shape=(None, 17, 3), dtype=f32, doc="annot3, m"),
      "pose_3d_univ": tfds.features.Tensor(shape=(None, 17, 3), dtype=f32,
                                           doc="univ_annot3, m"),
      "valid": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
      "activity": tfds.features.Tensor(shape=(None,), dtype=np.int32, doc="1..7, 0 = none"),
      "camera": tfds.features.FeaturesDict({
          "f": tfds.features.Tensor(shape=(2,), dtype=f32),
          "c": tfds.features.Tensor(shape=(2,), dtype=f32),
          "res": tfds.features.Tensor(shape=(2,), dtype=f32, doc="(width, height) px"),
      }),
  })


def crop_features(size: int = CROP_SIZE) -> tfds.features.FeaturesDict:
  image = tfds.features.Image(shape=(size, size, 3), encoding_format="png")
  f32 = lambda *shape: tfds.features.Tensor(shape=shape, dtype=np.float32)  # noqa: E731
  return tfds.features.FeaturesDict({
      "images": tfds.features.Sequence(image, length=1),
      "K": f32(1, 3, 3), "R": f32(1, 3, 3), "t": f32(1, 3),
      "pose_3d_world": f32(17, 3), "pose_3d_cam": f32(1, 17, 3), "pose_3d_univ": f32(1, 17, 3),
      "pose_2d_px": f32(1, 17, 2), "pose_2d_crop": f32(1, 17, 2),
      "subject": tfds.features.Text(), "action": tfds.features.Text(),
      "sequence": tfds.features.Text(), "frame": tfds.features.Scalar(dtype=np.int32),
      "activity": tfds.features.Scalar(dtype=np.int32),
      "valid": tfds.features.Scalar(dtype=np.bool_),
  })


class Builder(array_record_builder.ArrayRecordBuilder):
  """MPI-INF-3DHP test and training poses, and test-set crops."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      Mpi3dhpConfig(name="test", description="Test set poses, one record per sequence."),
      Mpi3dhpConfig(name="test_crops", crops=True,
                    description="Test set crops, one record per valid frame."),
      Mpi3dhpConfig(name="train", source="train",
                    description="Training set poses, 14 cameras."),
      Mpi3dhpConfig(name="train_8cams", source="train", cameras=CHEST_CAMERAS,
                    description="Training set poses, cameras 0, 1, 2, 4, 5, 6, 7, 8."),
  ]
  DEFAULT_CONFIG_NAME = "test"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  MPI-INF-3DHP is licence-gated (https://vcai.mpi-inf.mpg.de/3dhp-dataset/): accept the
  licence and run its get_dataset.sh (training set) and get_testset.sh (test set). The
  manual folder then holds
    mpi_inf_3dhp_test_set/TS1/annot_data.mat, .../TS1/imageSequence/img_000001.jpg, ...TS6
    S1/Seq1/annot.mat, S1/Seq1/camera.calibration, ... S8/Seq2   (configs train*)
  python -m data_prep.build mpi_inf_3dhp --manual_dir /path/to/mpi_inf_3dhp
  """

  def _info(self) -> tfds.core.DatasetInfo:
    features = crop_features() if self.builder_config.crops else pose_features()
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features,
                                 homepage="https://vcai.mpi-inf.mpg.de/3dhp-dataset/")

  def _manual_root(self, dl_manager) -> pathlib.Path:
    try:
      return pathlib.Path(os.fspath(dl_manager.manual_dir))
    except AssertionError as error:  # TFDS's way of saying the folder is missing or empty
      raise DatasetError(f"{error}\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}") from error

  def _split_generators(self, dl_manager):
    config = self.builder_config
    root = self._manual_root(dl_manager)
    # Everything is read and checked here, before any record is written.
    if config.source == "train":
      return {"train": self._generate_examples(
          readers.read_train_set(root, cameras=config.cameras))}
    sequences = readers.read_test_set(root)
    if config.crops:
      for sequence in sequences:
        check_frames(sequence)
    return {"test": self._generate_examples(sequences)}

  def _generate_examples(self, sequences):
    for sequence in sequences:
      if not self.builder_config.crops:
        yield (f"{sequence.subject}/{sequence.sequence}/{sequence.camera_index}",
               pose_record(sequence))
        continue
      for frame in np.flatnonzero(sequence.valid):
        yield f"{sequence.sequence}/{frame:06d}", crop_record(sequence, int(frame))


def pose_record(sequence: readers.PoseSequence) -> dict:
  """A PoseSequence -> the pose record of the module docstring."""
  width, height = sequence.intrinsics.res
  pose_2d = cameras_lib.normalize_screen_coordinates(
      sequence.pose_2d_px.astype(np.float64), np.float64(width), np.float64(height))
  return {
      "subject": sequence.subject, "sequence": sequence.sequence,
      "camera_index": sequence.camera_index, "setting": sequence.intrinsics.setting,
      "num_frames": len(sequence.pose_2d_px), "pose_2d_px": sequence.pose_2d_px,
      "pose_2d": np.asarray(pose_2d, np.float32),
      "pose_3d_cam": sequence.pose_3d_cam / np.float32(1000.0),
      "pose_3d_univ": sequence.pose_3d_univ / np.float32(1000.0),
      "valid": sequence.valid.astype(np.bool_), "activity": sequence.activity,
      "camera": {"f": np.asarray(sequence.intrinsics.f, np.float32),
                 "c": np.asarray(sequence.intrinsics.c, np.float32),
                 "res": np.asarray(sequence.intrinsics.res, np.float32)},
  }


def frame_path(sequence: readers.PoseSequence, frame: int) -> pathlib.Path:
  """The JPEG of 0-based `frame` (the release numbers frames from 1)."""
  return sequence.image_dir / readers.IMAGE_PATTERN.format(frame + 1)


def check_frames(sequence: readers.PoseSequence) -> None:
  """Every valid frame's JPEG exists and has the camera's size (header only)."""
  expected = tuple(sequence.intrinsics.res)
  for frame in np.flatnonzero(sequence.valid):
    path = frame_path(sequence, int(frame))
    if not path.is_file():
      raise DatasetError(f"{path}: no such file; test_crops needs the frames of every valid "
                         f"frame in {sequence.image_dir}")
    try:
      with PIL.Image.open(path) as image:
        size = image.size
    except (OSError, PIL.UnidentifiedImageError) as error:
      raise DatasetError(f"{path}: not a readable image ({error})") from error
    if size != expected:
      raise DatasetError(f"{path}: is {size[0]} x {size[1]} px; {sequence.sequence} frames are "
                         f"{expected[0]} x {expected[1]}")


def crop_box(pose_3d_mm: np.ndarray, f: np.ndarray, c: np.ndarray) -> np.ndarray:
  """(17, 3) camera-frame mm -> (3,) box (x0, y0, side): the synthetic default's framing."""
  pinhole = np.asarray(cameras_lib.project_pinhole(pose_3d_mm, f, c), np.float64)
  pad = float(np.mean(f)) * _BODY_PAD_MM / pose_3d_mm[0, 2]
  return crops.square_box(pinhole, pinhole[0], pad, _BOX_SCALE)


def crop_record(sequence: readers.PoseSequence, frame: int, size: int = CROP_SIZE) -> dict:
  """The crop record of one frame (module docstring)."""
  f = np.asarray(sequence.intrinsics.f, np.float64)
  c = np.asarray(sequence.intrinsics.c, np.float64)
  pose_cam = sequence.pose_3d_cam[frame].astype(np.float64)
  box = crop_box(pose_cam, f, c)
  path = frame_path(sequence, frame)
  try:
    with PIL.Image.open(path) as image:
      pixels = np.asarray(image.convert("RGB"))
  except (OSError, PIL.UnidentifiedImageError) as error:
    raise DatasetError(f"{path}: not a readable image ({error})") from error
  crop = crops.crop_image(pixels, box, size)
  activity = int(sequence.activity[frame])
  return {
      "images": [multiview_record.png_bytes(crop)],
      "K": crops.crop_intrinsics(f, c, box, size)[None],
      "R": np.eye(3, dtype=np.float32)[None], "t": np.zeros((1, 3), np.float32),
      "pose_3d_world": pose_cam.astype(np.float32),
      "pose_3d_cam": pose_cam[None].astype(np.float32),
      "pose_3d_univ": sequence.pose_3d_univ[frame][None],
      "pose_2d_px": sequence.pose_2d_px[frame][None],
      "pose_2d_crop": crops.crop_points(sequence.pose_2d_px[frame], box, size)[None].astype(
          np.float32),
      "subject": sequence.subject,
      "action": protocol.activity_name(activity) if activity else "",
      "sequence": sequence.sequence, "frame": frame, "activity": activity,
      "valid": bool(sequence.valid[frame]),
  }
