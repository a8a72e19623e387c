"""Real CMU motion as Human3.6M-like pose sequences of seven synthetic subjects.

The ten bundled CMU clips (geopose_jax/assets/cmu_mocap/, see its README for the terms)
are read with our BVH reader, resampled to the requested frame rate by interpolating
every joint's local rotation (so bone lengths stay exactly constant), mapped to the
Human3.6M 17-joint layout, turned from the files' Y-up into Human3.6M's Z-up world, in
millimetres, with the floor at z = 0, and placed inside the area that all four
Human3.6M cameras of the subject see.

Each synthetic subject has its own bone proportions (per-subject scaling of the BVH
offsets, symmetric left/right) and performs clips with variations (mirrored, another
heading, another place on the floor). The test subjects S9 and S11 perform only clips
that no training subject performs.
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
from geopose_jax.data import vocab
from geopose_jax.geometry import cameras as cameras_lib

# cgspeed CMU units are inches / 0.45; this turns them into millimetres.
CMU_UNIT_MM = 56.444
CMU_FPS = 120.0

# Clip id -> action name (vocab.ACTIONS).
CLIP_ACTIONS = {
    "02_01": "Walking", "02_02": "Walking", "07_01": "Walking", "08_01": "Walking",
    "35_01": "Walking", "02_03": "Running", "09_01": "Running", "16_01": "Jumping",
    "02_05": "Boxing", "02_07": "Swordplay",
}
# Clips only the test subjects perform.
TEST_CLIPS = ("35_01", "09_01")
TRAIN_CLIPS = tuple(c for c in CLIP_ACTIONS if c not in TEST_CLIPS)

# The CMU joint that gives each Human3.6M joint; the root is the midpoint of the two
# UpLegs, which is where Human3.6M's pelvis joint sits (CMU's Hips is ~10 cm higher).
H36M_FROM_CMU = (
    ("LeftUpLeg", "RightUpLeg"), ("RightUpLeg",), ("RightLeg",), ("RightFoot",),
    ("LeftUpLeg",), ("LeftLeg",), ("LeftFoot",), ("Spine",), ("Neck",), ("Head",),
    ("Head_end",), ("LeftArm",), ("LeftForeArm",), ("LeftHand",), ("RightArm",),
    ("RightForeArm",), ("RightHand",))
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

_SCALE_GROUPS = {
    "legs": ("LeftLeg", "LeftFoot", "RightLeg", "RightFoot"),
    "hips": ("LeftUpLeg", "RightUpLeg"),
    "spine": ("Spine", "Spine1", "Neck", "Neck1", "LeftShoulder", "RightShoulder"),
    "head": ("Head", "Head_end"),
    "shoulders": ("LeftArm", "RightArm"),
    "arms": ("LeftForeArm", "LeftHand", "RightForeArm", "RightHand"),
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


def _v(mirror, heading, dx=0.0, dy=0.0) -> Variation:
  return Variation(mirror=mirror, heading_deg=heading, offset_mm=(dx, dy))


# Which clip variations each subject performs. Short clips come in two variations for the
# training subjects; the test subjects perform the held-out clips four times each.
_SHORT_TRAIN = ("02_01", "02_02", "07_01", "08_01", "02_03", "16_01")
_LONG_TRAIN = ("02_05", "02_07")


def _plan() -> dict[str, list[tuple[str, Variation]]]:
  plan = {}
  for i, subject in enumerate(vocab.TRAIN_SUBJECTS):
    items = []
    for j, clip in enumerate(_SHORT_TRAIN):
      heading = 47.0 * i + 61.0 * j
      items.append((clip, _v((i + j) % 2 == 1, heading, 150.0 * (i - 2), -100.0 * (j % 3 - 1))))
      items.append((clip, _v((i + j) % 2 == 0, heading + 150.0, -120.0 * (j % 2), 80.0 * (i - 2))))
    for j, clip in enumerate(_LONG_TRAIN):
      items.append((clip, _v((i + j) % 2 == 0, 73.0 * i + 110.0 * j, 100.0 * (j - 0.5), 0.0)))
    plan[subject] = items
  for i, subject in enumerate(vocab.TEST_SUBJECTS):
    items = []
    for j, clip in enumerate(TEST_CLIPS):
      for k in range(4):
        heading = 90.0 * k + 35.0 * i + 20.0 * j
        items.append((clip, _v((i + k) % 2 == 1, heading, 100.0 * (k - 1.5), 120.0 * (i - 0.5))))
    plan[subject] = items
  return plan


SEQUENCE_PLAN = _plan()


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


def _resample_rotations(rotations: np.ndarray, source_fps: float,
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


@functools.lru_cache(maxsize=64)
def _clip_poses_cached(path: str, fps: float, scale: BodyScale) -> np.ndarray:
  poses, _ = clip_poses(path, fps, scale)
  poses.flags.writeable = False
  return poses


def clip_poses(path: str | os.PathLike, fps: float = 50.0,
               scale: BodyScale = BodyScale()) -> tuple[np.ndarray, np.ndarray]:
  """Reads a CMU BVH clip as Human3.6M-17 poses in a Z-up world, millimetres.

  Frame 0 (the T-pose) is dropped, the rest resampled to `fps`. The floor (the lowest
  point any joint, toes included, reaches over the clip) is at z = 0; x, y are the
  file's own (not yet placed).

  Returns:
    poses: (N, 17, 3) float64 mm.
    lowest: (N,) height of the lowest BVH point (toe tips included) per frame, mm.
  """
  motion = _read_bvh_cached(os.fspath(path))
  names = list(motion.names)
  for needed in {n for group in H36M_FROM_CMU for n in group}:
    motion.index(needed)  # KeyError naming the file and the joint
  if motion.num_frames < 3:
    raise ValueError(f"BVH clip {motion.path} has {motion.num_frames} frames; need >= 3")
  rotations, root = bvh_lib.local_transforms(motion)
  rotations, root = rotations[1:], root[1:]
  factors = _offset_scales(names, scale)
  leg_factor = scale.overall * scale.legs
  resampled, times, lo = _resample_rotations(rotations, motion.fps, fps)
  w = (times - lo)[:, None]
  root = (1 - w) * root[lo] + w * root[lo + 1]
  positions = bvh_lib.forward_kinematics(motion.parents, motion.offsets * factors[:, None],
                                         resampled, root * leg_factor)
  positions = positions @ _Y_UP_TO_Z_UP.T * CMU_UNIT_MM
  index = [[names.index(n) for n in group] for group in H36M_FROM_CMU]
  poses = np.stack([positions[:, idx].mean(axis=1) for idx in index], axis=1)
  lowest = positions[..., 2].min(axis=1)
  floor = lowest.min()
  poses[..., 2] -= floor
  return poses, lowest - floor


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


def subject_sequences(subject: str, fps: float = 50.0,
                      bvh_dir: str | os.PathLike | None = None,
                      plan: Sequence[tuple[str, Variation]] | None = None
                      ) -> list[MotionSequence]:
  """The sequences of one synthetic subject.

  Args:
    subject: a name of vocab.SUBJECTS.
    fps: output frame rate.
    bvh_dir: folder of the `<clip>.bvh` files; default the packaged clips.
    plan: (clip, Variation) pairs to perform; default SEQUENCE_PLAN[subject]. Sequence
      names number a clip's variations in plan order.
  """
  if subject not in SEQUENCE_PLAN:
    raise ValueError(f"unknown synthetic subject {subject!r}; expected one of "
                     f"{tuple(SEQUENCE_PLAN)}")
  out = []
  counts: dict[str, int] = {}
  for clip, variation in (SEQUENCE_PLAN[subject] if plan is None else plan):
    path = clip_path(clip, bvh_dir)
    poses = _clip_poses_cached(path, float(fps), SUBJECT_SCALES[subject])
    placed = place(poses, subject, variation)
    k = counts[clip] = counts.get(clip, -1) + 1
    out.append(MotionSequence(subject=subject, action=CLIP_ACTIONS[clip],
                              sequence=f"{clip}_{k}", poses_world=placed.astype(np.float32),
                              fps=fps))
  return out


def synthetic_sequences(fps: float = 50.0, subjects: Sequence[str] = vocab.SUBJECTS,
                        bvh_dir: str | os.PathLike | None = None) -> list[MotionSequence]:
  """The synthetic default's pose sequences: every subject's clips, at `fps`.

  Training subjects S1, S5, S6, S7, S8 perform TRAIN_CLIPS; test subjects S9, S11 perform
  TEST_CLIPS, which no training subject performs.

  Args:
    fps: output frame rate (the clips are 120 fps; 50 matches Human3.6M).
    subjects: which subjects to return (each must be in vocab.SUBJECTS).
    bvh_dir: folder with the `<clip>.bvh` files; default the packaged clips.

  Raises:
    ValueError: unknown subject; FileNotFoundError: a BVH file is missing.
  """
  if fps <= 0:
    raise ValueError(f"fps must be positive, got {fps}")
  return [s for subject in subjects for s in subject_sequences(subject, fps, bvh_dir)]
