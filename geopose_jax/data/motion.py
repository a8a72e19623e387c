"""Real CMU motion as Human3.6M-like pose sequences of seven synthetic subjects.

The motion comes from the packaged CMU library (geopose_jax/data/motion_library.py: 249
clips of 19 CMU subjects as joint rotations at 50 fps; the terms are in its README).
Each clip is mapped to the Human3.6M 17-joint layout by forward kinematics, turned from
the files' Y-up into Human3.6M's Z-up world, in millimetres, with the floor at z = 0, and
placed inside the area that all four Human3.6M cameras of the subject see.

What each subject performs, split by CMU subject and balanced by action, is planned in
geopose_jax/data/motion_plan.py.

Each synthetic subject has its own bone proportions (per-subject scaling of the offsets,
symmetric left/right) and performs segments with variations (mirrored, another heading,
another place on the floor). The ten original BVH clips (geopose_jax/assets/cmu_mocap/)
are part of the library and can still be read as BVH with `clip_poses`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from geopose_jax import skeleton
from geopose_jax.data import bvh as bvh_lib
from geopose_jax.data import motion_library
from geopose_jax.errors import InputError
from geopose_jax.geometry import cameras as cameras_lib

# cgspeed CMU units are inches / 0.45; this turns them into millimetres.
CMU_UNIT_MM = 56.444

# The ten clips also bundled as BVH (geopose_jax/assets/cmu_mocap/) -> action
# (vocab.LIBRARY_ACTIONS). They are in the library too; as files they serve the readers
# that take BVH.
CLIP_ACTIONS = {
    "02_01": "walking", "02_02": "walking", "07_01": "walking", "08_01": "walking",
    "35_01": "walking", "02_03": "running", "09_01": "running", "16_01": "jumping",
    "02_05": "sports", "02_07": "sports",
}
# The BVH clips of the test CMU subjects (TEST_CMU_SUBJECTS).
TEST_CLIPS = ("35_01", "09_01")
TRAIN_CLIPS = tuple(c for c in CLIP_ACTIONS if c not in TEST_CLIPS)

# The CMU joint that gives each Human3.6M joint; the root is the midpoint of the two
# UpLegs, which is where Human3.6M's pelvis joint sits (CMU's Hips is ~10 cm higher).
H36M_FROM_CMU = (
    ("LeftUpLeg", "RightUpLeg"), ("RightUpLeg",), ("RightLeg",), ("RightFoot",),
    ("LeftUpLeg",), ("LeftLeg",), ("LeftFoot",), ("Spine",), ("Neck",), ("Head",),
    ("Head_end",), ("LeftArm",), ("LeftForeArm",), ("LeftHand",), ("RightArm",),
    ("RightForeArm",), ("RightHand",))
# The same for cgspeed's Daz release (a generic figure): its thigh joints are the hips;
# 'chest' sits where MotionBuilder's 'Spine' does (about 0.6 of the way to the neck); the
# head top is an end site added by data_prep/cmu_library.py.
H36M_FROM_DAZ = (
    ("lThigh", "rThigh"), ("rThigh",), ("rShin",), ("rFoot",), ("lThigh",), ("lShin",),
    ("lFoot",), ("chest",), ("neck",), ("head",), ("head_end",), ("lShldr",), ("lForeArm",),
    ("lHand",), ("rShldr",), ("rForeArm",), ("rHand",))
_FLIP = np.asarray(skeleton.H36M_FLIP_PERMUTATION)

# Y-up (BVH) -> Z-up (Human3.6M world): a proper rotation of +90 degrees about x, so
# handedness, and with it left and right, is kept.
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclasses.dataclass(frozen=True)
class BodyScale:
  """Per-subject bone-length factors applied to the BVH offsets (left = right)."""
  overall: float = 1.0
  legs: float = 1.0       # thigh, shin, and the root's translation
  hips: float = 1.0       # pelvis width
  spine: float = 1.0      # pelvis to neck
  head: float = 1.0       # neck to head top
  shoulders: float = 1.0  # shoulder width
  arms: float = 1.0       # upper arm, forearm


# CMU performers are ~1.55-1.6 m tall; these make 1.6-1.85 m subjects of varied build.
SUBJECT_SCALES = {
    "S1": BodyScale(overall=1.05, legs=1.02, hips=1.08, spine=1.0, shoulders=0.95, arms=1.0),
    "S5": BodyScale(overall=1.02, legs=1.04, hips=1.12, spine=0.97, shoulders=0.9, arms=0.96),
    "S6": BodyScale(overall=1.12, legs=0.98, hips=1.05, spine=1.06, shoulders=1.08, arms=1.02),
    "S7": BodyScale(overall=1.06, legs=1.05, hips=1.0, spine=0.98, shoulders=1.0, arms=1.05),
    "S8": BodyScale(overall=1.14, legs=1.03, hips=0.98, spine=1.02, shoulders=1.1, arms=1.03),
    "S9": BodyScale(overall=1.09, legs=1.0, hips=1.02, spine=1.04, shoulders=1.04, arms=0.98),
    "S11": BodyScale(overall=1.04, legs=1.06, hips=1.06, spine=0.96, shoulders=0.94, arms=1.02),
}

# A joint's offset is the bone from its parent; MotionBuilder names, then Daz names.
_SCALE_GROUPS = {
    "legs": ("LeftLeg", "LeftFoot", "RightLeg", "RightFoot", "lShin", "lFoot", "rShin",
             "rFoot"),
    "hips": ("LeftUpLeg", "RightUpLeg", "lButtock", "rButtock", "lThigh", "rThigh"),
    "spine": ("Spine", "Spine1", "Neck", "Neck1", "LeftShoulder", "RightShoulder",
              "abdomen", "chest", "neck", "lCollar", "rCollar"),
    "head": ("Head", "Head_end", "head", "head_end"),
    "shoulders": ("LeftArm", "RightArm", "lShldr", "rShldr"),
    "arms": ("LeftForeArm", "LeftHand", "RightForeArm", "RightHand", "lForeArm", "lHand",
             "rForeArm", "rHand"),
}


@dataclasses.dataclass(frozen=True)
class Variation:
  """How a subject performs a clip: mirrored or not, heading (deg), floor offset (mm)."""
  mirror: bool = False
  heading_deg: float = 0.0
  offset_mm: tuple[float, float] = (0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class MotionSequence:
  """One synthetic subject performing one clip variation.

  Attributes:
    subject: 'S1' ... 'S11'.
    action: a name of vocab.ACTIONS.
    sequence: '<clip>_<variation>', e.g. '02_01_1'.
    poses_world: (N, 17, 3) float32 Human3.6M joints, world mm, Z up, floor z = 0.
    fps: frames per second of `poses_world`.
  """
  subject: str
  action: str
  sequence: str
  poses_world: np.ndarray
  fps: float


def default_bvh_dir() -> str:
  """The packaged CMU clips: geopose_jax/assets/cmu_mocap/."""
  return str(importlib.resources.files("geopose_jax") / "assets" / "cmu_mocap")


def clip_path(clip: str, bvh_dir: str | os.PathLike | None = None) -> str:
  """Path of a clip's BVH file; ValueError for an unknown clip id."""
  if clip not in CLIP_ACTIONS:
    raise ValueError(f"unknown CMU clip {clip!r}; known clips: {tuple(CLIP_ACTIONS)}")
  return os.path.join(os.fspath(bvh_dir) if bvh_dir else default_bvh_dir(), clip + ".bvh")


def _offset_scales(names: Sequence[str], scale: BodyScale) -> np.ndarray:
  factors = np.full(len(names), scale.overall)
  for group, joints in _SCALE_GROUPS.items():
    for joint in joints:
      if joint in names:
        factors[names.index(joint)] *= getattr(scale, group)
  return factors


def resample_rotations(rotations: np.ndarray, source_fps: float,
                        fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(F, J, 3, 3) at source_fps -> (N, J, 3, 3) at fps by per-joint slerp.

  Returns the rotations, the (N,) fractional source frame of each output frame, and the
  (N,) source frame below it.
  """
  num_frames, num_joints = rotations.shape[:2]
  # Files store the frame time rounded (0.0083333 s); snap to the intended integer rate.
  if abs(source_fps - round(source_fps)) < 1e-3 * source_fps:
    source_fps = float(round(source_fps))
  count = int(np.floor((num_frames - 1) / source_fps * fps + 1e-6)) + 1
  times = np.arange(count) * (source_fps / fps)
  lo = np.minimum(np.floor(times).astype(int), num_frames - 2)
  w = (times - lo)[:, None]
  r0 = Rotation.from_matrix(rotations[lo].reshape(-1, 3, 3))
  r1 = Rotation.from_matrix(rotations[lo + 1].reshape(-1, 3, 3))
  step = (r0.inv() * r1).as_rotvec().reshape(len(lo), num_joints, 3)
  out = r0 * Rotation.from_rotvec((step * w[..., None]).reshape(-1, 3))
  return out.as_matrix().reshape(len(lo), num_joints, 3, 3), times, lo


@functools.lru_cache(maxsize=16)
def _read_bvh_cached(path: str) -> bvh_lib.BvhMotion:
  return bvh_lib.read_bvh(path)


def skeleton_poses(names: Sequence[str], parents: np.ndarray, offsets_mm: np.ndarray,
                   rotations: np.ndarray, root_mm: np.ndarray,
                   scale: BodyScale = BodyScale()) -> tuple[np.ndarray, np.ndarray]:
  """Human3.6M-17 poses of a cgspeed skeleton (MotionBuilder or Daz names), Z up, mm.

  Args:
    names, parents: (J,) the skeleton; offsets_mm: (J, 3) Y-up rest offsets.
    rotations: (F, J, 3, 3) local rotations; root_mm: (F, 3) root translation, Y up.
    scale: the subject's bone-length factors.

  Returns:
    poses: (F, 17, 3) float64 mm, floor (the lowest point any joint reaches over the clip,
      toe tips included) at z = 0; x, y as in the file (not yet placed).
    lowest: (F,) height of the lowest joint per frame, mm.
  """
  names = list(names)
  mapping = H36M_FROM_CMU if "LeftUpLeg" in names else H36M_FROM_DAZ
  index = {n: i for i, n in enumerate(names)}
  missing = sorted({n for group in mapping for n in group} - set(index))
  if missing:
    raise InputError(f"skeleton lacks the joints {missing} that the Human3.6M-17 mapping "
                     "needs")
  factors = _offset_scales(names, scale)
  positions = bvh_lib.forward_kinematics(parents, offsets_mm * factors[:, None], rotations,
                                         root_mm * (scale.overall * scale.legs))
  positions = positions @ _Y_UP_TO_Z_UP.T
  poses = np.stack([positions[:, [index[n] for n in group]].mean(axis=1)
                    for group in mapping], axis=1)
  lowest = positions[..., 2].min(axis=1)
  floor = lowest.min()
  poses[..., 2] -= floor
  return poses, lowest - floor


def clip_poses(path: str | os.PathLike, fps: float = 50.0,
               scale: BodyScale = BodyScale()) -> tuple[np.ndarray, np.ndarray]:
  """Reads a cgspeed MotionBuilder CMU BVH clip (120 fps, T-pose frame 0) as Human3.6M-17.

  Frame 0 (the T-pose) is dropped, the rest resampled to `fps` (see `skeleton_poses` for
  the result).
  """
  motion = _read_bvh_cached(os.fspath(path))
  for needed in {n for group in H36M_FROM_CMU for n in group}:
    motion.index(needed)  # KeyError naming the file and the joint
  if motion.num_frames < 3:
    raise InputError(f"BVH clip {motion.path} has {motion.num_frames} frames; need >= 3")
  rotations, root = bvh_lib.local_transforms(motion)
  rotations, times, lo = resample_rotations(rotations[1:], motion.fps, fps)
  root = root[1:]
  w = (times - lo)[:, None]
  root = (1 - w) * root[lo] + w * root[lo + 1]
  return skeleton_poses(motion.names, motion.parents, motion.offsets * CMU_UNIT_MM,
                        rotations, root * CMU_UNIT_MM, scale)


def library_poses(clip: str, scale: BodyScale = BodyScale(),
                  library_dir: str | None = None) -> np.ndarray:
  """(N, 17, 3) float64 mm of a library clip at 50 fps (see `skeleton_poses`)."""
  data = motion_library.load_clip(clip, library_dir)
  poses, _ = skeleton_poses(data.joints, data.parents, data.offsets, data.rotations,
                            data.root, scale)
  return poses


@functools.lru_cache(maxsize=None)
def allowed_root_grid(subject: str, spacing_mm: float = 100.0, reach_mm: float = 450.0,
                      height_mm: float = 2000.0, margin_px: float = 20.0) -> np.ndarray:
  """Floor positions (x, y) where a person stays inside all four cameras of `subject`.

  A position counts when a column of radius `reach_mm` and height `height_mm` around it
  projects inside every image with `margin_px` to spare.

  Returns:
    (P, 2) float64 mm, grid points spaced `spacing_mm`.
  """
  cams = cameras_lib.load_h36m_cameras(subject)
  axis = np.arange(-4000.0, 4000.0 + 1, spacing_mm)
  gx, gy = np.meshgrid(axis, axis, indexing="ij")
  centres = np.stack([gx.ravel(), gy.ravel()], -1)
  angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
  ring = np.stack([np.cos(angles), np.sin(angles)], -1) * reach_mm
  heights = np.array([0.0, height_mm / 2, height_mm])
  offsets = np.concatenate([np.concatenate([ring, np.full((12, 1), h)], -1)
                            for h in heights])
  points = np.concatenate([np.broadcast_to(centres[:, None], (len(centres), len(offsets), 2)),
                           np.zeros((len(centres), len(offsets), 1))], -1) + offsets
  ok = np.ones(len(centres), bool)
  for c in range(4):
    cam = cams[c]
    x_cam = cameras_lib.world_to_camera(points, cam)
    uv = cameras_lib.project_pinhole(x_cam, cam.f.astype(np.float64), cam.c.astype(np.float64))
    w, h = cam.res
    inside = ((x_cam[..., 2] > 500) & (uv[..., 0] > margin_px) & (uv[..., 0] < w - margin_px)
              & (uv[..., 1] > margin_px) & (uv[..., 1] < h - margin_px))
    ok &= inside.all(axis=1)
  if not ok.any():
    raise ValueError(f"no floor position is seen by all cameras of subject {subject!r}")
  return centres[ok]


def _inside(grid: np.ndarray, xy: np.ndarray, spacing: float = 100.0) -> np.ndarray:
  """(N, 2) positions -> (N,) whether each lies within half a spacing of a (P, 2) grid point.

  The grid lies on a lattice of `spacing`, so this is a lookup in its occupancy image.
  """
  origin = grid.min(axis=0)
  cells = np.round((grid - origin) / spacing).astype(int)
  occupied = np.zeros(tuple(cells.max(axis=0) + 1), bool)
  occupied[cells[:, 0], cells[:, 1]] = True
  index = np.round((xy - origin) / spacing).astype(int)
  valid = ((index >= 0) & (index < occupied.shape)).all(axis=-1)
  out = np.zeros(len(xy), bool)
  out[valid] = occupied[index[valid, 0], index[valid, 1]]
  return out


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
  best, start, best_span = 0, 0, (0, 0)
  for i, m in enumerate(np.append(mask, False)):
    if not m:
      if i - start > best:
        best, best_span = i - start, (start, i)
      start = i + 1
  return best_span


def place(poses: np.ndarray, subject: str, variation: Variation) -> np.ndarray:
  """Mirrors, turns and moves a clip so its root stays where all cameras see it.

  The clip's root path is centred on the allowed area (plus the variation's offset). If the
  requested heading does not fit, the nearest heading (15-degree steps) that keeps every
  frame inside is used; if none does, the longest inside stretch of frames is kept.

  Args:
    poses: (N, 17, 3) Z-up mm, floor at 0.

  Returns:
    (M, 17, 3) placed poses, M <= N.
  """
  if variation.mirror:
    poses = poses[:, _FLIP] * np.array([-1.0, 1.0, 1.0])
  grid = allowed_root_grid(subject)
  centre = (grid.min(axis=0) + grid.max(axis=0)) / 2 + np.asarray(variation.offset_mm)
  root = poses[:, 0, :2]
  best = None
  for step in sorted(range(24), key=lambda s: min(s, 24 - s)):
    angle = np.deg2rad(variation.heading_deg + 15.0 * step)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    path = root @ rot.T
    shift = centre - (path.min(axis=0) + path.max(axis=0)) / 2
    inside = _inside(grid, path + shift)
    span = _longest_run(inside)
    if best is None or span[1] - span[0] > best[2][1] - best[2][0]:
      best = (rot, shift, span)
    if inside.all():
      break
  rot, shift, (start, stop) = best
  rot3 = np.eye(3)
  rot3[:2, :2] = rot
  placed = poses @ rot3.T
  placed[..., :2] += shift
  return placed[start:stop]
