"""Tiny fake data in the real formats: VideoPose3D .npz, raw Human3.6M .cdf, multi-view TFDS.

Every writer puts its files under a folder the test owns (tmp_path). Poses are random but
plausible: a body-sized cloud of joints standing inside the area the Human3.6M cameras see.
"""

from __future__ import annotations

import io
import pathlib

from etils import epath
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from geopose_jax.geometry import cameras as cameras_lib

CAMERA_IDS = cameras_lib.H36M_CAMERA_IDS


def random_world_poses(rng: np.random.Generator, num_frames: int, num_joints: int = 32
                       ) -> np.ndarray:
  """(N, J, 3) float32 world metres: a slowly moving body-sized joint cloud, z up."""
  base = np.array([0.0, 0.0, 0.9]) + rng.uniform(-0.3, 0.3, 3) * np.array([1, 1, 0])
  offsets = rng.uniform(-0.4, 0.4, (num_joints, 3)) * np.array([0.6, 0.6, 2.0])
  drift = np.cumsum(rng.normal(0.0, 0.005, (num_frames, 1, 3)), axis=0)
  return (base + offsets + drift).astype(np.float32)


def project_world(world_m: np.ndarray, subject: str) -> list[np.ndarray]:
  """(N, J, 3) world metres -> 4 x (N, J, 2) distorted pixels through `subject`'s cameras."""
  cameras = cameras_lib.load_h36m_cameras(subject)
  views = []
  for index in range(len(CAMERA_IDS)):
    camera = cameras[index]
    cam = cameras_lib.world_to_camera(np.asarray(world_m, np.float64) * 1000.0, camera)
    views.append(np.asarray(cameras_lib.project_distorted(cam, camera), np.float32))
  return views


def write_videopose3d_npz(folder: pathlib.Path, sequences: dict, *, extra_2d_frames: int = 3,
                          seed: int = 0, shape_2d: tuple[int, int] = (17, 2)
                          ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes data_3d_h36m.npz and data_2d_h36m_gt.npz as VideoPose3D's scripts do.

  Args:
    folder: where to write.
    sequences: {subject: {action: num_frames}}.
    extra_2d_frames: the 2D runs this many frames longer than the 3D (as in the real files).
    shape_2d: per-frame 2D shape; anything but (17, 2) makes a malformed file.

  Returns:
    (path_3d, path_2d).
  """
  rng = np.random.default_rng(seed)
  positions_3d, positions_2d = {}, {}
  for subject, actions in sequences.items():
    positions_3d[subject], positions_2d[subject] = {}, {}
    for action, num_frames in actions.items():
      world = random_world_poses(rng, num_frames + extra_2d_frames)
      positions_3d[subject][action] = world[:num_frames]
      views = project_world(world[:, [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25,
                                      26, 27]],
                            subject if subject in cameras_lib.h36m_subjects() else "S1")
      if shape_2d != (17, 2):
        views = [np.zeros((len(v),) + tuple(shape_2d), np.float32) for v in views]
      positions_2d[subject][action] = views
  folder.mkdir(parents=True, exist_ok=True)
  path_3d, path_2d = folder / "data_3d_h36m.npz", folder / "data_2d_h36m_gt.npz"
  np.savez_compressed(path_3d, positions_3d=positions_3d)
  metadata = {"num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13],
                                                       [1, 2, 3, 14, 15, 16]]}
  np.savez_compressed(path_2d, positions_2d=positions_2d, metadata=metadata)
  return path_3d, path_2d


def _write_cdf_pose(path: pathlib.Path, pose: np.ndarray) -> None:
  """Writes variable "Pose" (1, N, D) as the raw release stores it."""
  from cdflib import cdfwrite
  path.parent.mkdir(parents=True, exist_ok=True)
  data = np.asarray(pose, np.float64).reshape(1, len(pose), -1)
  writer = cdfwrite.CDF(str(path))
  writer.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE,
                    "Num_Elements": 1, "Rec_Vary": True, "Dim_Sizes": list(data.shape[1:])},
                   var_data=data)
  writer.close()


def write_raw_cdf(root: pathlib.Path, subject: str, sequence: str, num_frames: int,
                  seed: int = 0) -> np.ndarray:
  """Writes one sequence's D3_Positions and 4 D2_Positions .cdf files; returns world mm."""
  rng = np.random.default_rng(seed)
  world_mm = random_world_poses(rng, num_frames) * 1000.0
  _write_cdf_pose(root / subject / "MyPoseFeatures" / "D3_Positions" / f"{sequence}.cdf",
                  world_mm)
  for camera_id, view in zip(CAMERA_IDS, project_world(world_mm / 1000.0, subject)):
    _write_cdf_pose(root / subject / "MyPoseFeatures" / "D2_Positions" /
                    f"{sequence}.{camera_id}.cdf", view)
  return world_mm


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(array).save(buffer, format="png")
  return buffer.getvalue()


class FakeMultiview(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A tiny multi-view dataset with the synthetic_multiview record layout.

  Images encode their identity so tests can check which view and frame they came from:
  image[..., 0] = camera index * 40, image[..., 1] = frame, image[..., 2] = sequence number;
  background = 255 - image; mask[0, 0] = 1 for even frames. Features as synthetic_multiview's
  (PNG image sequences, zlib-compressed masks). `frames` maps
  split -> [(subject, action, sequence, num_frames)].
  """

  name = "fake_multiview"
  VERSION = tfds.core.Version("1.0.0")
  SIZE = 16
  frames = {
      "train": [("S1", "Walking", "02_01_0", 5), ("S1", "Running", "02_03_0", 4),
                ("S5", "Walking", "02_01_1", 6), ("S6", "Jumping", "16_01_0", 3)],
      "test": [("S9", "Walking", "35_01_0", 3), ("S11", "Running", "09_01_0", 4)],
  }

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default looks the module up through `importlib_resources`, which is not a
    # dependency; the file itself is what it needs.
    return epath.Path(__file__)

  def __init__(self, **kwargs):
    # ArrayRecord files are written and read without TensorFlow.
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self):
    f32, size = np.float32, self.SIZE
    image = tfds.features.Image(shape=(size, size, 3))
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "images": tfds.features.Sequence(image, length=4),
        "backgrounds": tfds.features.Sequence(image, length=4),
        "masks": tfds.features.Tensor(shape=(4, size, size), dtype=np.uint8,
                                      encoding=tfds.features.Encoding.ZLIB),
        "R": tfds.features.Tensor(shape=(4, 3, 3), dtype=f32),
        "t": tfds.features.Tensor(shape=(4, 3), dtype=f32),
        "K": tfds.features.Tensor(shape=(4, 3, 3), dtype=f32),
        "pose_3d_world": tfds.features.Tensor(shape=(17, 3), dtype=f32),
        "pose_3d_cam": tfds.features.Tensor(shape=(4, 17, 3), dtype=f32),
        "pose_2d_px": tfds.features.Tensor(shape=(4, 17, 2), dtype=f32),
        "pose_2d_crop": tfds.features.Tensor(shape=(4, 17, 2), dtype=f32),
        "subject": tfds.features.Text(),
        "action": tfds.features.Text(),
        "sequence": tfds.features.Text(),
        "frame": tfds.features.Scalar(dtype=np.int32),
    }))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in self.frames}

  def _generate_examples(self, split):
    size = self.SIZE
    for number, (subject, action, sequence, num_frames) in enumerate(self.frames[split]):
      cameras = cameras_lib.load_h36m_cameras(subject)
      for frame in range(num_frames):
        world = (np.full((17, 3), float(frame)) + np.arange(17)[:, None]).astype(np.float32)
        images = [np.stack([np.full((size, size), v * 40), np.full((size, size), frame),
                            np.full((size, size), number)], -1).astype(np.uint8)
                  for v in range(4)]
        mask = np.zeros((size, size), np.uint8)
        mask[0, 0] = frame % 2 == 0
        yield f"{sequence}/{frame}", {
            "images": [_png(i) for i in images],
            "backgrounds": [_png(255 - i) for i in images],
            "masks": np.stack([mask] * 4),
            "R": np.asarray(cameras.R, np.float32),
            "t": np.asarray(cameras.t, np.float32),
            "K": np.tile(np.diag([100.0, 100.0, 1.0]).astype(np.float32), (4, 1, 1)),
            "pose_3d_world": world,
            "pose_3d_cam": np.stack([world + 1000.0 * (v + 1) for v in range(4)]),
            "pose_2d_px": np.zeros((4, 17, 2), np.float32),
            "pose_2d_crop": np.zeros((4, 17, 2), np.float32),
            "subject": subject, "action": action, "sequence": sequence, "frame": frame,
        }


def build_fake_multiview(data_dir: pathlib.Path) -> str:
  """Builds `fake_multiview` into data_dir; returns its name."""
  FakeMultiview(data_dir=str(data_dir)).download_and_prepare()
  return FakeMultiview.name


# The smallest NVS network that runs the tasks on 16x16 fake crops.
TINY_NVS_NET = dict(
    encoder_depth=(1, 1, 1), width=4, block="bottleneck", layer4_reg_blocks=1,
    to_vec_channels=(8, 8), to_vec_padded=True, bottleneck_num_latent_points=8,
    appearance_dim=4, decoder_channels=(4, 8, 12), dropout=0.0, image_size=16,
    frozen_stem_batch_stats=False)


def tiny_multiview_run(config, data_dir: str, name: str, steps: int, batch_size: int):
  """Points a multi-view task config at the fake dataset with a tiny network and run."""
  config.data.name = name
  config.data.data_dir = data_dir
  config.data.train_subjects = ()
  config.data.test_subjects = ()
  config.model.net.update(TINY_NVS_NET)
  config.train.steps = steps
  config.train.batch_size = batch_size
  config.train.log_every = 1
  config.train.progress_bar = False
  config.eval.batch_size = batch_size
  config.viz.num_examples = 2
  return config


# A small NVSModel for model tests (128x128 input, narrow layers).
SMALL_NVS_CONFIG = dict(
    encoder_depth=(1, 1, 1), width=16, block="bottleneck", layer4_reg_blocks=1,
    to_vec_channels=(64, 32), bottleneck_num_latent_points=32, appearance_dim=16,
    decoder_channels=(8, 16, 32, 64), dropout=0.3, image_size=128)


def small_nvs_model(**overrides):
  """The small NVSModel with any field overridden (unknown fields fail)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from geopose_jax.models import nvs  # pylint: disable=g-import-not-at-top
  fields = {f.name for f in dataclasses.fields(nvs.NVSModel)}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"unknown NVSModel fields {sorted(unknown)}")
  return nvs.NVSModel(**{**SMALL_NVS_CONFIG, **overrides})


def smpl_forward_kinematics(theta, rest):
  """(72,) axis-angle on a (24, 3) SMPL rest skeleton -> (24, 3) joints, as a numpy loop over
  the kinematic tree (an independent reference for the jnp body code)."""
  from scipy.spatial.transform import Rotation  # pylint: disable=g-import-not-at-top
  from geopose_jax import skeleton  # pylint: disable=g-import-not-at-top
  rot = Rotation.from_rotvec(np.asarray(theta).reshape(24, 3)).as_matrix()
  world, joints = [None] * 24, np.zeros((24, 3))
  for j, p in enumerate(skeleton.SMPL_PARENTS):
    if p < 0:
      world[j], joints[j] = rot[j], rest[j]
    else:
      world[j] = world[p] @ rot[j]
      joints[j] = joints[p] + world[p] @ (rest[j] - rest[p])
  return joints


def save_finished_run(workdir, config, state):
  """A workdir as a finished run leaves it: config.json and a checkpoint of `state` at step 1."""
  from geopose_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(config.to_json_best_effort())
  saver = checkpoint.Checkpointer(workdir, async_save=False)
  saver.save(1, state)
  saver.close()
