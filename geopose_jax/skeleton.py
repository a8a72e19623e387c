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
_ACTION_KEYS = {name.lower(): name
                for name in vocab.H36M_ACTIONS + vocab.SYNTHETIC_ONLY_ACTIONS}
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


def _checked_layout(names, parents, left, right) -> None:
  """Import-time guard: a layout's tables agree in length and name left/right joints."""
  assert len(names) == len(parents) and len(left) == len(right)
  assert all(names[l].startswith(("l", "L")) and names[r].startswith(("r", "R"))
             for l, r in zip(left, right)), names


# --- MPI-INF-3DHP, the 17-joint test layout ---------------------------------------------------
# The order of the test set's annot_data.mat ("relevant" joints of the official
# mpii_get_joints.m), 0-based. Root: the pelvis (14), as the official evaluation centres on it.
MPI3DHP_JOINT_NAMES = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "pelvis", "spine", "head")
MPI3DHP_NUM_JOINTS = 17
MPI3DHP_ROOT = 14
MPI3DHP_PARENTS = (1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1)
MPI3DHP_LEFT = (5, 6, 7, 11, 12, 13)
MPI3DHP_RIGHT = (2, 3, 4, 8, 9, 10)
MPI3DHP_FLIP_PERMUTATION = _flip_permutation(MPI3DHP_NUM_JOINTS, MPI3DHP_LEFT, MPI3DHP_RIGHT)
# h36m_pose[j] = mpi3dhp_pose[MPI3DHP_TO_H36M[j]]: every H36M-17 joint has a 3DHP counterpart
# (pelvis -> Hip, spine -> Spine, neck -> Thorax, head -> Neck/Nose, head_top -> Head), so the
# map is a permutation and H36M_TO_MPI3DHP is its inverse.
MPI3DHP_TO_H36M = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)
H36M_TO_MPI3DHP = tuple(MPI3DHP_TO_H36M.index(i) for i in range(MPI3DHP_NUM_JOINTS))
# The 28 joints of the training set's annot.mat ("all" joints of mpii_get_joints.m).
MPI3DHP_TRAIN_JOINT_NAMES = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe", "right_hip",
    "right_knee", "right_ankle", "right_foot", "right_toe")
MPI3DHP_TRAIN_NUM_JOINTS = 28
# test_layout_pose[j] = train_pose[MPI3DHP_28_TO_17[j]] (by name).
MPI3DHP_28_TO_17 = tuple(MPI3DHP_TRAIN_JOINT_NAMES.index(n) for n in MPI3DHP_JOINT_NAMES)
_checked_layout(MPI3DHP_JOINT_NAMES, MPI3DHP_PARENTS, MPI3DHP_LEFT, MPI3DHP_RIGHT)

# --- HumanEva-I, 15 joints (VideoPose3D's `humaneva15` layout) ---------------------------------
HUMANEVA_JOINT_NAMES = (
    "pelvis", "thorax", "lshoulder", "lelbow", "lwrist", "rshoulder", "relbow", "rwrist",
    "lhip", "lknee", "lankle", "rhip", "rknee", "rankle", "head")
HUMANEVA_NUM_JOINTS = 15
HUMANEVA_ROOT = 0
HUMANEVA_PARENTS = (-1, 0, 1, 2, 3, 1, 5, 6, 0, 8, 9, 0, 11, 12, 1)
HUMANEVA_LEFT = (2, 3, 4, 8, 9, 10)
HUMANEVA_RIGHT = (5, 6, 7, 11, 12, 13)
HUMANEVA_FLIP_PERMUTATION = _flip_permutation(HUMANEVA_NUM_JOINTS, HUMANEVA_LEFT, HUMANEVA_RIGHT)
# humaneva_pose[j] = h36m_pose[H36M_TO_HUMANEVA[j]]: the 15 HumanEva joints taken from H36M-17
# (HumanEva's head is H36M's head top; H36M's Spine (7) and Neck/Nose (9) are left out).
H36M_TO_HUMANEVA = (0, 8, 11, 12, 13, 14, 15, 16, 4, 5, 6, 1, 2, 3, 10)
# The other way only 15 of 17 joints exist; `humaneva_to_h36m` fills the two missing ones.
HUMANEVA_MISSING_IN_H36M = (7, 9)
_checked_layout(HUMANEVA_JOINT_NAMES, HUMANEVA_PARENTS, HUMANEVA_LEFT, HUMANEVA_RIGHT)


def flip_permutation(num_joints: int) -> tuple[int, ...]:
  """The left/right permutation of the pose layout stored with `num_joints` joints.

  The pose datasets store 17 joints in Human3.6M order (MPI-INF-3DHP's builder maps its
  own order to it) and HumanEva-I's 15 in their own order, so the count names the layout.
  """
  by_count = {H36M_NUM_JOINTS: H36M_FLIP_PERMUTATION,
              HUMANEVA_NUM_JOINTS: HUMANEVA_FLIP_PERMUTATION}
  if num_joints not in by_count:
    raise ValueError(f"no pose layout with {num_joints} joints; expected 17 (Human3.6M order) "
                     "or 15 (HumanEva-I)")
  return by_count[num_joints]


def mpi3dhp_to_h36m(pose):
  """(..., 17, D) in the 3DHP test order -> (..., 17, D) in H36M-17 order."""
  return _take_joints(pose, MPI3DHP_TO_H36M, MPI3DHP_NUM_JOINTS, "MPI-INF-3DHP")


def h36m_to_mpi3dhp(pose):
  """(..., 17, D) in H36M-17 order -> (..., 17, D) in the 3DHP test order."""
  return _take_joints(pose, H36M_TO_MPI3DHP, H36M_NUM_JOINTS, "Human3.6M")


def h36m_to_humaneva(pose):
  """(..., 17, D) H36M-17 -> (..., 15, D) HumanEva-15 (drops Spine and Neck/Nose)."""
  return _take_joints(pose, H36M_TO_HUMANEVA, H36M_NUM_JOINTS, "Human3.6M")


def humaneva_to_h36m(pose):
  """(..., 15, D) HumanEva-15 -> (..., 17, D) H36M-17.

  H36M's Spine is placed halfway between pelvis and thorax, its Neck/Nose halfway between
  thorax and head: joints HumanEva does not have, filled so that H36M-trained models get a
  complete input. Compare on the 15 real joints (`h36m_to_humaneva` of a prediction).
  """
  xp = namespace(pose)
  pose = xp.asarray(pose)
  if pose.shape[-2] != HUMANEVA_NUM_JOINTS:
    raise ValueError(f"pose has {pose.shape[-2]} joints (shape {pose.shape}); expected the "
                     f"{HUMANEVA_NUM_JOINTS} of HumanEva")
  taken = {h: pose[..., e, :] for e, h in enumerate(H36M_TO_HUMANEVA)}
  taken[7] = 0.5 * (pose[..., 0, :] + pose[..., 1, :])
  taken[9] = 0.5 * (pose[..., 1, :] + pose[..., 14, :])
  return xp.stack([taken[j] for j in range(H36M_NUM_JOINTS)], axis=-2)


def _take_joints(pose, indices, expected: int, layout: str):
  xp = namespace(pose)
  pose = xp.asarray(pose)
  if pose.ndim < 2 or pose.shape[-2] != expected:
    raise ValueError(f"pose has shape {pose.shape}; expected (..., {expected}, D) in the "
                     f"{layout} layout")
  return pose[..., list(indices), :]


def smpl_to_h36m(joints):
  """(..., 24, D) SMPL joints -> (..., 17, D) H36M-17, for exporting a body as H36M-17.

  The 14 corresponding joints (SMPL_TO_H36M_*) are taken as they are; the three H36M joints
  without a counterpart are approximated: the hips (1, 4) by SMPL's hip joints, which sit
  a little lower and wider, and the head top (10) by continuing the neck-to-head segment
  (H36M Thorax -> Neck/Nose) past SMPL's head joint by its own length.
  """
  xp = namespace(joints)
  joints = xp.asarray(joints)
  if joints.ndim < 2 or joints.shape[-2] != SMPL_NUM_JOINTS:
    raise ValueError(f"joints have shape {joints.shape}; expected (..., {SMPL_NUM_JOINTS}, "
                     f"D) SMPL joints")
  taken = {h: joints[..., s, :] for s, h in zip(SMPL_TO_H36M_SMPL_INDICES,
                                                SMPL_TO_H36M_H36M_INDICES)}
  taken[1] = joints[..., SMPL_JOINT_NAMES.index("right_hip"), :]
  taken[4] = joints[..., SMPL_JOINT_NAMES.index("left_hip"), :]
  head, neck = (joints[..., SMPL_JOINT_NAMES.index(n), :] for n in ("head", "neck"))
  taken[10] = 2.0 * head - neck
  return xp.stack([taken[j] for j in range(H36M_NUM_JOINTS)], axis=-2)
