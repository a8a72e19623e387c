"""Readers of the MPI-INF-3DHP release: the test set's annot_data.mat, the training set's
annot.mat and camera.calibration, and the test set's published intrinsics.

Test set (`mpi_inf_3dhp_test_set/TS<k>/`), annot_data.mat is MATLAB v7.3 (HDF5). MATLAB
stores arrays column-major, so h5py sees every array with its dimensions reversed:
  annot2       MATLAB 2 x 17 x 1 x N  -> h5py (N, 1, 17, 2)  image pixels
  annot3       MATLAB 3 x 17 x 1 x N  -> h5py (N, 1, 17, 3)  camera frame, mm
  univ_annot3  as annot3: the universal skeleton (scaled to a common body height), mm
  valid_frame  MATLAB 1 x N (or N x 1) -> h5py (N, 1)        1 where the frame is scored
  activity_annotation  as valid_frame, codes 1..7            (protocols.mpi_inf_3dhp)
Joints are the 17 "relevant" joints of the official mpii_get_joints.m
(skeleton.MPI3DHP_JOINT_NAMES); `imageSequence/img_%06d.jpg` holds frame j (1-based) as
img_{j:06d}.jpg.

Training set (`S<n>/Seq<m>/`), annot.mat is MATLAB v5 (scipy.io): `annot2`, `annot3`,
`univ_annot3` are 14 x 1 cells, one per camera, of N x 56 (28 joints x 2, joint-major) and
N x 84 arrays; `cameras` lists the camera indices 0..13. camera.calibration ("Skeletool
Camera Calibration File V1.0") gives per camera `size` (w h) and a row-major 4 x 4
`intrinsic` [[fx 0 cx 0] [0 fy cy 0] ...].

Every reader returns poses in Human3.6M-17 order (skeleton.MPI3DHP_TO_H36M) and raises one
error naming the file and the field for anything malformed.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from geopose_jax import skeleton
from geopose_jax.errors import DatasetError, InputError

TEST_SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
TRAIN_SUBJECTS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
TRAIN_SEQUENCES = ("Seq1", "Seq2")
NUM_TRAIN_CAMERAS = 14
TEST_DIR = "mpi_inf_3dhp_test_set"
IMAGE_PATTERN = "img_{:06d}.jpg"


@dataclasses.dataclass(frozen=True)
class Intrinsics:
  """Pinhole intrinsics of one camera: f (fx, fy), c (cx, cy), res (width, height) px."""
  f: tuple[float, float]
  c: tuple[float, float]
  res: tuple[int, int]
  setting: str


def _from_tc_calibration(focal_mm, sensor_mm, pixel_aspect, centre_offset_mm, res, setting):
  """Intrinsics from the fields of the release's "tc camera calibration v0.3" files.

  px per mm = width / sensor width; fx = focal * that, fy = fx * pixelAspect (y / x),
  principal point = image centre + centerOffset (mm, + = right and down) * px per mm.
  """
  per_mm = res[0] / sensor_mm[0]
  fx = focal_mm * per_mm
  return Intrinsics(f=(fx, fx * pixel_aspect),
                    c=(res[0] / 2 + centre_offset_mm[0] * per_mm,
                       res[1] / 2 + centre_offset_mm[1] * per_mm), res=res, setting=setting)


# The test set's two cameras, from test_util/camera_calibration/ts1-4cameras.calib (studio,
# 2048 x 2048) and ts5-6cameras.calib (outdoor GoPro, 1920 x 1080) of the official release.
# The outdoor file also gives OpenCV lens distortion (k1 -0.277, k2 0.131, p1 -0.00036,
# p2 -0.00115, k3 -0.049), which the pinhole K of the crops does not model.
STUDIO = _from_tc_calibration(7.32506, (10.0, 10.0), 1.00044, (-0.0322884, 0.0929296),
                              (2048, 2048), "studio")
OUTDOOR = _from_tc_calibration(8.770747185, (10.0, 5.625), 0.993236423,
                               (-0.104908645, 0.104899704), (1920, 1080), "outdoor")


def test_intrinsics(sequence: str) -> Intrinsics:
  """TS1-TS4: the studio camera; TS5-TS6: the outdoor one."""
  if sequence not in TEST_SEQUENCES:
    raise InputError(f"unknown MPI-INF-3DHP test sequence {sequence!r}; expected one of "
                     f"{TEST_SEQUENCES}")
  return STUDIO if sequence in TEST_SEQUENCES[:4] else OUTDOOR


@dataclasses.dataclass(frozen=True)
class PoseSequence:
  """One camera's view of one sequence, in Human3.6M-17 order.

  Attributes:
    subject: "TS1".."TS6" (test) or "S1".."S8" (training).
    sequence: "TS1".. (test) or "Seq1"/"Seq2" (training).
    camera_index: 0 for the test set; 0..13 for the training set.
    pose_2d_px: (N, 17, 2) float32 image pixels.
    pose_3d_cam: (N, 17, 3) float32 camera frame, mm (annot3).
    pose_3d_univ: (N, 17, 3) float32 universal skeleton, camera frame, mm (univ_annot3).
    valid: (N,) bool frames the protocol scores (all True for the training set).
    activity: (N,) int32 activity codes 1..7 (0 for the training set, which has none).
    intrinsics: the camera.
    origin: the file read, for messages.
    image_dir: the folder of the frames (test set), or None.
  """
  subject: str
  sequence: str
  camera_index: int
  pose_2d_px: np.ndarray
  pose_3d_cam: np.ndarray
  pose_3d_univ: np.ndarray
  valid: np.ndarray
  activity: np.ndarray
  intrinsics: Intrinsics
  origin: str
  image_dir: pathlib.Path | None = None


def _joints_last(array: np.ndarray, dims: int, path, key: str) -> np.ndarray:
  """An h5py view of a MATLAB dims x 17 x 1 x N array -> (N, 17, dims) float64."""
  array = np.asarray(array, np.float64)
  squeezed = array.reshape([s for s in array.shape if s != 1] or [1])
  if squeezed.ndim == 3 and squeezed.shape[1:] == (17, dims):
    out = squeezed
  elif squeezed.ndim == 3 and squeezed.shape[:2] == (dims, 17):
    out = np.transpose(squeezed, (2, 1, 0))  # written row-major, i.e. not by MATLAB
  else:
    raise DatasetError(f"{path}: {key!r} has shape {array.shape}; expected MATLAB "
                       f"{dims} x 17 x 1 x N, which h5py reads as (N, 1, 17, {dims})")
  if not np.all(np.isfinite(out)):
    raise DatasetError(f"{path}: {key!r} holds non-finite values; the file is damaged")
  return out


def _per_frame(array: np.ndarray, num_frames: int, path, key: str) -> np.ndarray:
  flat = np.asarray(array).reshape(-1)
  if flat.shape[0] != num_frames:
    raise DatasetError(f"{path}: {key!r} has {flat.shape[0]} entries for {num_frames} frames")
  return flat


def read_test_sequence(folder: str | pathlib.Path) -> PoseSequence:
  """Reads `TS<k>/annot_data.mat` (MATLAB v7.3 / HDF5)."""
  import h5py  # only this preparation needs it
  folder = pathlib.Path(folder)
  sequence = folder.name
  intrinsics = test_intrinsics(sequence)
  path = folder / "annot_data.mat"
  if not path.is_file():
    raise DatasetError(f"{path}: no such file; the test set layout is "
                       f"{TEST_DIR}/TS1..TS6/annot_data.mat (from mpi_inf_3dhp_test_set.zip)")
  try:
    with h5py.File(path, "r") as mat:
      missing = [k for k in ("annot2", "annot3", "univ_annot3", "valid_frame",
                             "activity_annotation") if k not in mat]
      if missing:
        raise DatasetError(f"{path}: has no {missing} (it holds {sorted(mat.keys())}); is it "
                           "the test set's annot_data.mat?")
      fields = {k: mat[k][()] for k in ("annot2", "annot3", "univ_annot3", "valid_frame",
                                        "activity_annotation")}
  except OSError as error:
    raise DatasetError(f"{path}: not a readable MATLAB v7.3 (HDF5) file ({error}); download "
                       "it again") from error
  pose_2d = _joints_last(fields["annot2"], 2, path, "annot2")
  num_frames = len(pose_2d)
  activity = _per_frame(fields["activity_annotation"], num_frames, path,
                        "activity_annotation").astype(np.int32)
  valid = _per_frame(fields["valid_frame"], num_frames, path, "valid_frame") != 0
  bad = sorted(set(activity[valid].tolist()) - set(range(1, 8)))
  if bad:
    raise DatasetError(f"{path}: valid frames carry activity codes {bad}; expected 1..7")
  to_h36m = list(skeleton.MPI3DHP_TO_H36M)
  views = {k: _joints_last(fields[k], 3, path, k)[:, to_h36m] for k in ("annot3", "univ_annot3")}
  for k, v in views.items():
    if len(v) != num_frames:
      raise DatasetError(f"{path}: {k!r} has {len(v)} frames, annot2 has {num_frames}")
  return PoseSequence(
      subject=sequence, sequence=sequence, camera_index=0,
      pose_2d_px=pose_2d[:, to_h36m].astype(np.float32),
      pose_3d_cam=views["annot3"].astype(np.float32),
      pose_3d_univ=views["univ_annot3"].astype(np.float32),
      valid=valid, activity=activity, intrinsics=intrinsics, origin=str(path),
      image_dir=folder / "imageSequence")


def read_test_set(root: str | pathlib.Path,
                  sequences=TEST_SEQUENCES) -> list[PoseSequence]:
  """The test sequences under `root` (the folder holding mpi_inf_3dhp_test_set/, or that
  folder itself); every one of `sequences` must be there."""
  root = pathlib.Path(root).expanduser()
  base = root / TEST_DIR if (root / TEST_DIR).is_dir() else root
  missing = [s for s in sequences if not (base / s).is_dir()]
  if missing:
    raise DatasetError(f"{base}: has no test sequence folder(s) {missing}; extract "
                       f"mpi_inf_3dhp_test_set.zip so that {TEST_DIR}/TS1/annot_data.mat exists")
  return [read_test_sequence(base / s) for s in sequences]


def parse_camera_calibration(path: str | pathlib.Path) -> dict[int, Intrinsics]:
  """camera.calibration of a training sequence -> {camera index: Intrinsics}."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DatasetError(f"{path}: no such file; every S<n>/Seq<m>/ of the training set has "
                       "one (from the release's get_dataset.sh)")
  cameras: dict[int, dict] = {}
  current = None
  for number, line in enumerate(path.read_text().splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    try:
      if fields[0] == "name":
        current = int(fields[1])
        cameras[current] = {}
      elif current is not None and fields[0] in ("size", "intrinsic"):
        cameras[current][fields[0]] = [float(v) for v in fields[1:]]
    except ValueError as error:
      raise DatasetError(f"{path}:{number}: cannot read {line.strip()!r} ({error})") from error
  result = {}
  for index, fields in cameras.items():
    if len(fields.get("size", ())) != 2 or len(fields.get("intrinsic", ())) != 16:
      raise DatasetError(f"{path}: camera {index} lacks 'size w h' or the 16 numbers of "
                         "'intrinsic'")
    k = np.asarray(fields["intrinsic"]).reshape(4, 4)
    result[index] = Intrinsics(f=(k[0, 0], k[1, 1]), c=(k[0, 2], k[1, 2]),
                               res=(int(fields["size"][0]), int(fields["size"][1])),
                               setting="training")
  return result


def read_train_sequence(folder: str | pathlib.Path, cameras=tuple(range(NUM_TRAIN_CAMERAS))
                        ) -> list[PoseSequence]:
  """Reads `S<n>/Seq<m>/annot.mat` (MATLAB v5) and camera.calibration: one view per camera."""
  import scipy.io  # only this preparation needs it
  folder = pathlib.Path(folder)
  path = folder / "annot.mat"
  if not path.is_file():
    raise DatasetError(f"{path}: no such file; the training set layout is S1..S8/Seq1,Seq2/"
                       "annot.mat (from the release's get_dataset.sh)")
  try:
    mat = scipy.io.loadmat(str(path))
  except Exception as error:  # scipy raises several kinds on damaged or v7.3 files
    raise DatasetError(f"{path}: cannot be read as a MATLAB v5 file ({type(error).__name__}: "
                       f"{error})") from error
  missing = [k for k in ("annot2", "annot3", "univ_annot3") if k not in mat]
  if missing:
    raise DatasetError(f"{path}: has no {missing}; is it a training sequence's annot.mat?")
  intrinsics = parse_camera_calibration(folder / "camera.calibration")
  to_17 = [skeleton.MPI3DHP_28_TO_17[j] for j in skeleton.MPI3DHP_TO_H36M]
  result = []
  for camera in cameras:
    if camera not in intrinsics:
      raise DatasetError(f"{folder / 'camera.calibration'}: has no camera {camera}")
    poses = {}
    for key, dims in (("annot2", 2), ("annot3", 3), ("univ_annot3", 3)):
      cells = np.asarray(mat[key], dtype=object).reshape(-1)
      if camera >= len(cells):
        raise DatasetError(f"{path}: {key!r} holds {len(cells)} cameras, camera {camera} asked")
      array = np.asarray(cells[camera], np.float64)
      width = skeleton.MPI3DHP_TRAIN_NUM_JOINTS * dims
      if array.ndim != 2 or array.shape[1] != width:
        raise DatasetError(f"{path}: {key}{{{camera + 1}}} has shape {array.shape}; expected "
                           f"(N, {width})")
      poses[key] = array.reshape(len(array), -1, dims)[:, to_17].astype(np.float32)
    num_frames = len(poses["annot2"])
    if any(len(v) != num_frames for v in poses.values()):
      raise DatasetError(f"{path}: camera {camera}'s annot2/annot3/univ_annot3 differ in "
                         "frame count")
    result.append(PoseSequence(
        subject=folder.parent.name, sequence=folder.name, camera_index=int(camera),
        pose_2d_px=poses["annot2"], pose_3d_cam=poses["annot3"],
        pose_3d_univ=poses["univ_annot3"], valid=np.ones(num_frames, bool),
        activity=np.zeros(num_frames, np.int32), intrinsics=intrinsics[camera],
        origin=str(path)))
  return result


def read_train_set(root: str | pathlib.Path, subjects=TRAIN_SUBJECTS,
                   cameras=tuple(range(NUM_TRAIN_CAMERAS))) -> list[PoseSequence]:
  """Every (subject, sequence, camera) of the training set under `root` (holding S1..S8)."""
  root = pathlib.Path(root).expanduser()
  missing = [f"{s}/{q}" for s in subjects for q in TRAIN_SEQUENCES if not (root / s / q).is_dir()]
  if missing:
    raise DatasetError(f"{root}: has no training sequence folder(s) {missing}")
  return [view for s in subjects for q in TRAIN_SEQUENCES
          for view in read_train_sequence(root / s / q, cameras)]
