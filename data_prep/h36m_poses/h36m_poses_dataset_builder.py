"""`h36m_poses`: Human3.6M-style 2D/3D pose sequences, one record per (subject, sequence, camera).

Builder configs (the 2D source differs, the record layout does not):
  synthetic        (default) the packaged CMU motion library performed by seven synthetic
                   subjects (geopose_jax.data.motion: test subjects perform clips of CMU
                   subjects no training subject performs; actions balanced), projected
                   through the real Human3.6M cameras of each subject with the distorted
                   projection: exact 2D.
  synthetic_noisy  the same with 2D noise that mimics a keypoint detector
                   (data_prep/h36m_poses/detector_noise.py).
  npz              VideoPose3D-format files in the manual folder: data_3d_h36m.npz and
                   data_2d_h36m_gt.npz (licence-gated; see MANUAL_DOWNLOAD_INSTRUCTIONS).
  npz_<name>_<hash> any pair of VideoPose3D-format files given by path (`npz_config`): the
                   2D may come from ground truth, CPN, Detectron or a user's own detector.
  cdf              the raw release's D3_Positions / D2_Positions .cdf files (manual folder).

Record (decoded with tfds; N frames):
  subject, action (a Human3.6M sequence name's canonical action, "Walking 1" ->
  "Walking"; any other name is its own action, e.g. "Dance"; the synthetic motion's
  categories, vocab.LIBRARY_ACTIONS), sequence (the source's name, e.g. "Walking 1"), camera_id (e.g. "54138969"), camera_index (0-3), num_frames,
  pose_2d_px (N, 17, 2) pixels, pose_2d (N, 17, 2) normalised screen coordinates
  (x / w * 2 - [1, h / w]), pose_3d_cam (N, 17, 3) camera frame in METRES,
  pose_3d_world (N, 17, 3) world in METRES, camera: {R (3, 3) world->camera, t (3,)
  centre in world mm, f (2,), c (2,), k (3,), p (2,), res (2,) = (width, height)}.
Splits: train = S1, S5, S6, S7, S8; test = S9, S11 (a split without sequences is omitted);
synthetic sources also have heldout = the training subjects on pieces of the training CMU
subjects' clips that train does not contain (geopose_jax.data.motion_plan.heldout_plan), to tell
generalisation to new people from generalisation to new frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import zlib

import numpy as np
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.h36m_poses import detector_noise
from data_prep.h36m_poses import readers
from geopose_jax.data import vocab
from geopose_jax.geometry import cameras as cameras_lib
from geopose_jax.skeleton import canonical_action

NAME = "h36m_poses"
NPZ_3D_DEFAULT = "data_3d_h36m.npz"
NPZ_2D_DEFAULT = "data_2d_h36m_gt.npz"
SYNTHETIC_FPS = 50.0


@dataclasses.dataclass(eq=False)
class H36mPosesConfig(tfds.core.BuilderConfig):
  """Where the poses come from.

  Attributes:
    source: 'synthetic', 'npz' or 'cdf'.
    detector_noise: add detector-like noise to the 2D (synthetic source).
    noise_seed: seed of that noise (combined with each record's key).
    npz_3d, npz_2d: VideoPose3D-format files: absolute paths, or names inside the manual
      folder. npz_2d '' projects the 3D pose through the cameras instead.
  """
  source: str = "synthetic"
  detector_noise: bool = False
  noise_seed: int = 0
  npz_3d: str = NPZ_3D_DEFAULT
  npz_2d: str = NPZ_2D_DEFAULT


def npz_config(npz_3d: str, npz_2d: str) -> H36mPosesConfig:
  """A config for VideoPose3D-format files given by path.

  Its name carries the 2D file's name and a hash of both files' paths, sizes and
  modification times, so each pair of files is built once, into its own folder, and is
  rebuilt when a file changes.
  """
  paths = [pathlib.Path(p).expanduser().resolve() for p in (npz_3d, npz_2d) if p]
  if not paths or not str(npz_3d):
    raise ValueError("npz_config needs the 3D file (config.data.npz_3d); the 2D file "
                     "(config.data.npz_2d) is optional")
  digest = hashlib.sha256()
  for path in paths:
    if not path.is_file():
      raise FileNotFoundError(f"{path}: no such file (VideoPose3D-format .npz expected)")
    stat = path.stat()
    digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
  stem = paths[-1].stem if npz_2d else "projected"
  stem = "".join(ch if ch.isalnum() else "_" for ch in stem)[:48]
  return H36mPosesConfig(
      name=f"npz_{stem}_{digest.hexdigest()[:10]}",
      description=f"VideoPose3D-format files {paths[0]}" + (f" + {paths[1]}" if npz_2d else ""),
      source="npz", npz_3d=str(paths[0]), npz_2d=str(paths[1]) if npz_2d else "")


def _camera_features() -> tfds.features.FeaturesDict:
  f32 = np.float32
  return tfds.features.FeaturesDict({
      "R": tfds.features.Tensor(shape=(3, 3), dtype=f32, doc="world->camera rotation"),
      "t": tfds.features.Tensor(shape=(3,), dtype=f32, doc="camera centre in world mm"),
      "f": tfds.features.Tensor(shape=(2,), dtype=f32, doc="focal lengths px"),
      "c": tfds.features.Tensor(shape=(2,), dtype=f32, doc="principal point px"),
      "k": tfds.features.Tensor(shape=(3,), dtype=f32, doc="radial distortion"),
      "p": tfds.features.Tensor(shape=(2,), dtype=f32, doc="tangential distortion"),
      "res": tfds.features.Tensor(shape=(2,), dtype=f32, doc="image (width, height) px"),
  })


class Builder(array_record_builder.ArrayRecordBuilder):
  """Human3.6M-layout 2D/3D pose sequences from synthetic, VideoPose3D or raw sources."""

  name = NAME
  VERSION = tfds.core.Version("2.1.0")
  RELEASE_NOTES = {
      "1.0.0": "First release.",
      "2.0.0": "synthetic: the 250-clip CMU library, split by CMU subject, balanced "
               "actions (520k training frames); any sequence name is accepted.",
      "2.1.0": "synthetic: a heldout split (training subjects, training CMU subjects' clip "
               "pieces that train does not use).",
  }
  BUILDER_CONFIGS = [
      H36mPosesConfig(name="synthetic", description="Bundled CMU motion through the "
                      "Human3.6M cameras; exact 2D (the default)."),
      H36mPosesConfig(name="synthetic_noisy", detector_noise=True,
                      description="Bundled CMU motion with detector-like 2D noise."),
      H36mPosesConfig(name="npz", source="npz", description="VideoPose3D-format "
                      f"{NPZ_3D_DEFAULT} + {NPZ_2D_DEFAULT} in the manual folder."),
      H36mPosesConfig(name="cdf", source="cdf", description="Raw Human3.6M "
                      "D3_Positions / D2_Positions .cdf files in the manual folder."),
  ]
  DEFAULT_CONFIG_NAME = "synthetic"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Human3.6M is licence-gated (http://vision.imar.ro/human3.6m, register and accept the
  licence); nothing is downloaded for you.
  - h36m_poses/npz: put the VideoPose3D-format files {NPZ_3D_DEFAULT} and
    {NPZ_2D_DEFAULT} (or give other files by path with
    --config.data.npz_3d=... --config.data.npz_2d=..., e.g. a CPN or your own
    detector's 2D of shape (N, 17, 2) per camera) in the manual folder.
  - h36m_poses/cdf: extract the "Poses" archives of the release so that the manual
    folder holds S1/MyPoseFeatures/D3_Positions/*.cdf and .../D2_Positions/*.cdf
    (S1, S5, S6, S7, S8, S9, S11).
  The manual folder is --config.data.manual_dir (default <data_dir>/downloads/manual).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    f32 = np.float32
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "subject": tfds.features.Text(),
            "action": tfds.features.Text(doc="canonical Human3.6M action, else the "
                                         "sequence's own name or motion category"),
            "sequence": tfds.features.Text(doc="the source's sequence name"),
            "camera_id": tfds.features.Text(),
            "camera_index": tfds.features.Scalar(dtype=np.int32),
            "num_frames": tfds.features.Scalar(dtype=np.int32),
            "pose_2d_px": tfds.features.Tensor(shape=(None, 17, 2), dtype=f32,
                                               doc="2D pixels"),
            "pose_2d": tfds.features.Tensor(shape=(None, 17, 2), dtype=f32,
                                            doc="2D normalised screen coordinates"),
            "pose_3d_cam": tfds.features.Tensor(shape=(None, 17, 3), dtype=f32,
                                                doc="3D camera frame, metres"),
            "pose_3d_world": tfds.features.Tensor(shape=(None, 17, 3), dtype=f32,
                                                  doc="3D world, metres"),
            "camera": _camera_features(),
        }),
        homepage="http://vision.imar.ro/human3.6m",
    )

  def _manual_dir(self, dl_manager) -> pathlib.Path:
    try:
      return pathlib.Path(os.fspath(dl_manager.manual_dir))
    except AssertionError as error:  # TFDS's way of saying the folder is missing or empty
      raise FileNotFoundError(str(error)) from error

  def _manual_path(self, dl_manager, name: str) -> pathlib.Path:
    path = pathlib.Path(name).expanduser()
    if path.is_absolute():
      return path
    return self._manual_dir(dl_manager) / name

  def _read_sequences(self, dl_manager) -> list[readers.PoseSequence]:
    config = self.builder_config
    if config.source == "synthetic":
      return synthetic_pose_sequences()
    if config.source == "npz":
      npz_2d = self._manual_path(dl_manager, config.npz_2d) if config.npz_2d else None
      return readers.read_npz(self._manual_path(dl_manager, config.npz_3d), npz_2d)
    if config.source == "cdf":
      return readers.read_cdf(self._manual_dir(dl_manager))
    raise ValueError(f"h36m_poses config {config.name!r}: unknown source {config.source!r}; "
                     "expected 'synthetic', 'npz' or 'cdf'")

  def _split_generators(self, dl_manager):
    # Everything is read and validated here, before any record is written.
    sequences = self._read_sequences(dl_manager)
    splits = {"train": vocab.TRAIN_SUBJECTS, "test": vocab.TEST_SUBJECTS}
    generators = {}
    for split, subjects in splits.items():
      chosen = [s for s in sequences if s.subject in subjects]
      if chosen:
        generators[split] = self._generate_examples(chosen)
    if self.builder_config.source == "synthetic" and generators:
      generators["heldout"] = self._generate_examples(synthetic_heldout_sequences())
    if not generators:
      raise ValueError(f"h36m_poses/{self.builder_config.name}: the source holds no sequence "
                       f"of the subjects {vocab.SUBJECTS}")
    return generators

  def _generate_examples(self, sequences):
    config = self.builder_config
    for sequence in sequences:
      for record_key, record in sequence_records(sequence):
        if config.detector_noise:
          seed = zlib.crc32(record_key.encode()) ^ config.noise_seed
          pixels = detector_noise.add_detector_noise(record["pose_2d_px"],
                                                     np.random.default_rng(seed))
          record = dict(record, pose_2d_px=pixels, pose_2d=_normalise(pixels, record["camera"]))
        yield record_key, record


def synthetic_pose_sequences() -> list[readers.PoseSequence]:
  """The bundled CMU motion of the synthetic subjects, world mm -> metres, 2D projected."""
  from geopose_jax.data import motion_plan  # the synthetic motion is only needed here
  return [readers.PoseSequence(
      subject=m.subject, sequence=m.sequence,
      pose_3d_world=np.asarray(m.poses_world, np.float32) / 1000.0, pose_2d_px=None,
      origin=f"geopose_jax.data.motion {m.subject} {m.sequence}", action=m.action)
          for m in motion_plan.synthetic_sequences(fps=SYNTHETIC_FPS)]


def synthetic_heldout_sequences() -> list[readers.PoseSequence]:
  """The training subjects' held-out motion (geopose_jax.data.motion_plan.heldout_sequences)."""
  from geopose_jax.data import motion_plan  # pylint: disable=g-import-not-at-top
  return [readers.PoseSequence(
      subject=m.subject, sequence=m.sequence,
      pose_3d_world=np.asarray(m.poses_world, np.float32) / 1000.0, pose_2d_px=None,
      origin=f"geopose_jax.data.motion held out {m.subject} {m.sequence}", action=m.action)
          for m in motion_plan.heldout_sequences(fps=SYNTHETIC_FPS)]


def _normalise(pixels: np.ndarray, camera: dict) -> np.ndarray:
  width, height = camera["res"]
  return np.asarray(cameras_lib.normalize_screen_coordinates(
      pixels, np.float32(width), np.float32(height)), np.float32)


def sequence_records(sequence: readers.PoseSequence):
  """Yields (key, record) for each of the 4 cameras of one sequence (see module doc)."""
  action = sequence.action or sequence_action(sequence.sequence)
  cameras = cameras_lib.load_h36m_cameras(sequence.subject)
  world_mm = np.asarray(sequence.pose_3d_world, np.float64) * 1000.0
  for index, camera_id in enumerate(cameras_lib.H36M_CAMERA_IDS):
    camera = cameras[index]
    camera_fields = {k: np.asarray(getattr(camera, k), np.float32)
                     for k in ("R", "t", "f", "c", "k", "p", "res")}
    cam_mm = np.asarray(cameras_lib.world_to_camera(
        world_mm, _numpy_camera(camera, np.float64)), np.float64)
    if sequence.pose_2d_px is None:
      pixels = np.asarray(cameras_lib.project_distorted(
          cam_mm, _numpy_camera(camera, np.float64)), np.float32)
    else:
      pixels = np.asarray(sequence.pose_2d_px[index], np.float32)
    yield f"{sequence.subject}/{sequence.sequence}/{camera_id}", {
        "subject": sequence.subject,
        "action": action,
        "sequence": sequence.sequence,
        "camera_id": camera_id,
        "camera_index": index,
        "num_frames": len(world_mm),
        "pose_2d_px": pixels,
        "pose_2d": _normalise(pixels, camera_fields),
        "pose_3d_cam": (cam_mm / 1000.0).astype(np.float32),
        "pose_3d_world": np.asarray(sequence.pose_3d_world, np.float32),
        "camera": camera_fields,
    }


def sequence_action(name: str) -> str:
  """The action a sequence is grouped under: its canonical Human3.6M action when the name is
  one ("Walking 1" -> "Walking"), else the name itself ("Dance" stays "Dance")."""
  try:
    return canonical_action(name)
  except ValueError:
    if not str(name).strip():
      raise ValueError("a sequence needs a non-empty name") from None
    return str(name).strip()


def _numpy_camera(camera: cameras_lib.Camera, dtype) -> cameras_lib.Camera:
  """The camera with numpy fields of `dtype` (host-side preparation stays in numpy)."""
  return cameras_lib.Camera(**{k: np.asarray(getattr(camera, k), dtype)
                               for k in ("R", "t", "f", "c", "k", "p", "res")})
