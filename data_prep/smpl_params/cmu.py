"""SMPL pose parameters from the bundled CMU clips (BVH joint rotations on SMPL's tree).

Both skeletons use y up, the body facing +z and its left side at +x, and a BVH joint's
rotation turns the bone to its child as an SMPL joint's does. The rest poses differ,
though: CMU's legs are spread by ~20 degrees, its collars rise. So SMPL joint j's world
frame is CMU's times a fixed rest correction C_j, the smallest rotation that turns the SMPL
rest bone (joint -> first child, on the T-pose skeleton of geopose_jax.body.procedural)
onto the CMU rest bone: G_smpl(j) = G_cmu(j) C_j, and the parameter is the relative
rotation R_j = G_smpl(parent(j))^T G_smpl(j). CMU joints SMPL lacks (LHipJoint, Neck1, ...)
are thereby folded into their neighbours; leaves and the pelvis keep C = I.

Betas: the clips carry no body shape, so each frame gets beta ~ N(0, I) (10 components,
clipped to [-3, 3]) from a seeded generator — the spread that SMPL's and the procedural
body's shape spaces are scaled for. Every frame also appears mirrored (left and right
swapped), which doubles the data and balances the handedness of the few clips.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from geopose_jax import skeleton
from geopose_jax.data import bvh as bvh_lib

NUM_BETAS = 10
BETA_CLIP = 3.0
# The CMU (cgspeed) joint whose world frame each SMPL joint takes.
SMPL_FROM_CMU = {
    "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg",
    "spine1": "LowerBack", "left_knee": "LeftLeg", "right_knee": "RightLeg",
    "spine2": "Spine", "left_ankle": "LeftFoot", "right_ankle": "RightFoot",
    "spine3": "Spine1", "left_foot": "LeftToeBase", "right_foot": "RightToeBase",
    "neck": "Neck", "left_collar": "LeftShoulder", "right_collar": "RightShoulder",
    "head": "Head", "left_shoulder": "LeftArm", "right_shoulder": "RightArm",
    "left_elbow": "LeftForeArm", "right_elbow": "RightForeArm", "left_wrist": "LeftHand",
    "right_wrist": "RightHand", "left_hand": "LeftFingerBase", "right_hand": "RightFingerBase",
}


def global_rotations(motion: bvh_lib.BvhMotion) -> np.ndarray:
  """(F, J, 3, 3) world rotation of every BVH joint."""
  local, _ = bvh_lib.local_transforms(motion)
  world = np.empty_like(local)
  for j, p in enumerate(motion.parents):
    world[:, j] = local[:, j] if p < 0 else world[:, p] @ local[:, j]
  return world


def _turn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The smallest rotation taking direction a to direction b (3, 3)."""
  if np.linalg.norm(a) < 1e-9 or np.linalg.norm(b) < 1e-9:
    return np.eye(3)   # a zero-length bone has no direction to correct
  a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
  axis = np.cross(a, b)
  sin, cos = np.linalg.norm(axis), float(a @ b)
  if sin < 1e-9:
    return np.eye(3)
  return Rotation.from_rotvec(axis / sin * np.arctan2(sin, cos)).as_matrix()


def rest_corrections(motion: bvh_lib.BvhMotion) -> np.ndarray:
  """(24, 3, 3) C_j turning SMPL's rest bones onto the CMU file's (module docstring)."""
  from geopose_jax.body import procedural  # pylint: disable=g-import-not-at-top
  smpl_rest, _ = procedural.rest_skeleton()
  cmu_rest = bvh_lib.forward_kinematics(
      motion.parents, motion.offsets, np.eye(3)[None, None].repeat(len(motion.names), 1),
      np.zeros((1, 3)))[0]
  parents = skeleton.SMPL_PARENTS
  out = np.broadcast_to(np.eye(3), (len(parents), 3, 3)).copy()
  for j in range(1, len(parents)):
    children = [k for k, p in enumerate(parents) if p == j]
    if not children:
      continue
    k = children[0]
    cmu_j, cmu_k = (motion.index(SMPL_FROM_CMU[skeleton.SMPL_JOINT_NAMES[i]]) for i in (j, k))
    out[j] = _turn(smpl_rest[k] - smpl_rest[j], cmu_rest[cmu_k] - cmu_rest[cmu_j])
  return out


def smpl_rotations(motion: bvh_lib.BvhMotion) -> np.ndarray:
  """(F, 24, 3, 3) SMPL joint rotations relative to the parent (joint 0: global)."""
  world = global_rotations(motion)
  cmu = [motion.index(SMPL_FROM_CMU[name]) for name in skeleton.SMPL_JOINT_NAMES]
  smpl_world = world[:, cmu] @ rest_corrections(motion)
  out = np.empty_like(smpl_world)
  for j, p in enumerate(skeleton.SMPL_PARENTS):
    own = smpl_world[:, j]
    out[:, j] = own if p < 0 else np.swapaxes(smpl_world[:, p], -1, -2) @ own
  return out


def mirror_axis_angle(theta: np.ndarray) -> np.ndarray:
  """(..., 72) SMPL axis-angle -> the mirror-image pose (x -> -x): left and right joints
  swap and each rotation vector becomes (x, -y, -z)."""
  per_joint = theta.reshape(theta.shape[:-1] + (24, 3))
  mirrored = per_joint[..., np.asarray(skeleton.SMPL_FLIP_PERMUTATION), :] * np.array([1, -1, -1])
  return mirrored.reshape(theta.shape)


def clip_parameters(path: str, frame_step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """One CMU clip -> theta (N, 72) axis-angle and beta (N, 10), mirrored copies included.

  Frame 0 (the calibration T-pose) is dropped; then every `frame_step`-th frame is kept.
  """
  motion = bvh_lib.read_bvh(path)
  missing = sorted(set(SMPL_FROM_CMU.values()) - set(motion.names))
  if missing:
    raise ValueError(f"{path}: not a CMU (cgspeed) skeleton, it lacks the joints {missing}")
  rotations = smpl_rotations(motion)[1::frame_step]
  theta = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_rotvec()
  theta = theta.reshape(len(rotations), 72).astype(np.float32)
  theta = np.concatenate([theta, mirror_axis_angle(theta)]).astype(np.float32)
  beta = np.random.default_rng(seed).standard_normal((len(theta), NUM_BETAS))
  return theta, np.clip(beta, -BETA_CLIP, BETA_CLIP).astype(np.float32)
