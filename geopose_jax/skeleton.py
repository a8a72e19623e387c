"""Joint layouts (Human3.6M-17, SMPL-24, CMU BVH), their maps, flips and action names."""

import re

from geopose_jax.data import vocab
from geopose_jax.geometry._array import namespace

# --- Human3.6M, 17 joints (the layout every method here predicts) -------------------------
H36M_JOINT_NAMES = (
    "Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax",
    "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist")
H36M_NUM_JOINTS = 17
H36M_ROOT = 0
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_LEFT = (4, 5, 6, 11, 12, 13)
H36M_RIGHT = (1, 2, 3, 14, 15, 16)
# Indices of the 17 joints in the 32-joint motion-capture skeleton of the raw release.
H36M_32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# (child, parent) for every non-root joint.
H36M_BONES = tuple((j, p) for j, p in enumerate(H36M_PARENTS) if p >= 0)


def _flip_permutation(num_joints: int, left, right) -> tuple[int, ...]:
  perm = list(range(num_joints))
  for l, r in zip(left, right):
    perm[l], perm[r] = r, l
  return tuple(perm)


# flipped[j] = pose[H36M_FLIP_PERMUTATION[j]]: the permutation swaps left and right joints.
H36M_FLIP_PERMUTATION = _flip_permutation(H36M_NUM_JOINTS, H36M_LEFT, H36M_RIGHT)

# --- SMPL, 24 joints -----------------------------------------------------------------------
SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand")
SMPL_NUM_JOINTS = 24
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
                20, 21)
SMPL_LEFT = tuple(i for i, n in enumerate(SMPL_JOINT_NAMES) if n.startswith("left_"))
SMPL_RIGHT = tuple(SMPL_JOINT_NAMES.index("right_" + SMPL_JOINT_NAMES[i][len("left_"):])
                   for i in SMPL_LEFT)
SMPL_FLIP_PERMUTATION = _flip_permutation(SMPL_NUM_JOINTS, SMPL_LEFT, SMPL_RIGHT)

# The 14 corresponding joints of the SMPL-from-latent method: SMPL joint
# SMPL_TO_H36M_SMPL_INDICES[i] matches H36M joint SMPL_TO_H36M_H36M_INDICES[i]. H36M's hips
# (1, 4) and head top (10) have no SMPL counterpart; entry 0 is the root (excluded from the
# original's loss, which uses the other 13).
SMPL_TO_H36M_SMPL_INDICES = (0, 5, 8, 4, 7, 6, 12, 15, 16, 18, 20, 17, 19, 21)
SMPL_TO_H36M_H36M_INDICES = (0, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16)

# --- CMU motion capture (cgspeed BVH) -> H36M-17 --------------------------------------------
# The head top (10) is the Head joint's end site, which has no name of its own.
CMU_BVH_TO_H36M = {
    "Hips": 0, "RightUpLeg": 1, "RightLeg": 2, "RightFoot": 3, "LeftUpLeg": 4, "LeftLeg": 5,
    "LeftFoot": 6, "Spine": 7, "Neck": 8, "Head": 9, "LeftArm": 11, "LeftForeArm": 12,
    "LeftHand": 13, "RightArm": 14, "RightForeArm": 15, "RightHand": 16}


def flip_pose(pose, permutation=H36M_FLIP_PERMUTATION):
  """Mirror image of a pose: negate x and swap left and right joints.

  Valid for camera-frame 3D and for 2D in coordinates centred on the image
  (normalised screen coordinates); pixel coordinates must be mirrored as w - x instead.

  Args:
    pose: (..., J, D) with D >= 1 (x first); J = len(permutation).
    permutation: joint permutation, H36M's by default (SMPL_FLIP_PERMUTATION for SMPL).

  Returns:
    (..., J, D) flipped pose (numpy in, numpy out; JAX in, JAX out).
  """
  xp = namespace(pose)
  pose = xp.asarray(pose)
  if pose.shape[-2] != len(permutation):
    raise ValueError(f"pose has {pose.shape[-2]} joints (shape {pose.shape}); the flip "
                     f"permutation is for {len(permutation)}")
  flipped = pose[..., list(permutation), :]
  sign = xp.ones(pose.shape[-1], dtype=pose.dtype)
  sign = xp.concatenate([-sign[:1], sign[1:]])
  return flipped * sign


# --- Action names ----------------------------------------------------------------------------
# Variants found in the raw release and in preprocessed files, lower-cased, letters only.
_ACTION_ALIASES = {
    "takingphoto": "Photo",
    "photo": "Photo",
    "walkingdog": "WalkDog",
    "walkdog": "WalkDog",
    "walktogether": "WalkTogether",
    "walkingtogether": "WalkTogether",
}
_ACTION_KEYS = {name.lower(): name for name in vocab.ACTIONS}
_ACTION_KEYS.update(_ACTION_ALIASES)
# A trailing camera id ("Walking 1.54138969"), file extension, or sub-action number
# ("Walking 1", "Walking_2", "Walking1") is not part of the action.
_CAMERA_SUFFIX = re.compile(r"\.\d{8}(\.\w+)?$")
_EXTENSION = re.compile(r"\.(cdf|mp4|mat|h5|npz)$", re.IGNORECASE)
_SUB_ACTION = re.compile(r"[\s_\-]*\d+$")


def canonical_action(raw: str) -> str:
  """Maps a raw Human3.6M action name to its canonical name in `vocab.H36M_ACTIONS`.

  Handles the naming variants of the release and of preprocessed files: "TakingPhoto" and
  "Photo", "WalkingDog" and "WalkDog", "WalkTogether", sub-action numbers ("Walking 1",
  "Eating 2", "Sitting_1"), trailing camera ids and extensions, case and spacing. The
  synthetic dataset's extra motions (`vocab.SYNTHETIC_ONLY_ACTIONS`) pass through unchanged.

  Raises:
    ValueError: for a name that is not a known action.
  """
  if not isinstance(raw, str):
    raise ValueError(f"action name must be a string, got {raw!r}")
  name = _EXTENSION.sub("", raw.strip())
  name = _CAMERA_SUFFIX.sub("", name)
  name = _SUB_ACTION.sub("", name)
  key = re.sub(r"[^a-z]", "", name.lower())
  if key not in _ACTION_KEYS:
    raise ValueError(f"unknown action {raw!r}; expected a Human3.6M action such as "
                     f"{vocab.H36M_ACTIONS} (with optional sub-action number)")
  return _ACTION_KEYS[key]
