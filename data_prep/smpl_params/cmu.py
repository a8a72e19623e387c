"""SMPL pose parameters from CMU motion: the clip's joint rotations put on SMPL's tree.

Every cgspeed skeleton (MotionBuilder, its 2008 names, Daz) and SMPL use y up, the body
facing +z and its left side at +x, and a joint's rotation turns the bone to its child as an
SMPL joint's does. The rest poses differ, though: CMU's legs are spread by ~20 degrees, its
collars rise, the Daz figure's hands point forward. So SMPL joint j takes the world frame of
one CMU joint s(j) (`SMPL_FROM_CMU`, `SMPL_FROM_DAZ`) times a fixed rest correction C_j,
the smallest rotation that turns the SMPL rest bone (j -> its first child k, on the T-pose
skeleton of geopose_jax.body.procedural) onto the CMU rest bone s(j) -> s(k):
G_smpl(j) = G_cmu(s(j)) C_j, and the parameter is the relative rotation
R_j = G_smpl(parent(j))^T G_smpl(j). CMU joints SMPL lacks (LHipJoint, Neck1, lButtock)
are thereby folded into their neighbours; leaves and the pelvis keep C = I.

Where s(k) sits on s(j) (MotionBuilder's Neck on Spine1; the Daz chest standing in for both
spine2 and spine3) the bone followed is the one to the next SMPL descendant that sits
elsewhere. Where s(j) has no bone below it (the motion library keeps no fingers, so its
hands end at the wrist) the hand is taken to continue the forearm at rest.

The corrections stay below ~45 degrees on the T-pose skeletons (the most: SMPL's neck leans
forward, CMU's stands upright); the 2008 release stands with its arms down, so its shoulders
and elbows turn by 90. A clip lacking a mapped joint, whose
rest skeleton does not stand y up facing +z with its left side at +x, or that would need a
correction beyond MAX_REST_CORRECTION_DEG (a bone pointing backwards) is rejected with an
InputError saying why.

Every frame also appears mirrored (left and right swapped: `mirror_axis_angle`), which
balances the handedness of the clips.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from data_prep import cmu_library
from geopose_jax import skeleton
from geopose_jax.data import bvh as bvh_lib
from geopose_jax.data import motion_library
from geopose_jax.errors import InputError

# The MotionBuilder joint whose world frame each SMPL joint takes.
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
# The Daz figure's: one chest for spine2 and spine3; no toe joint, so the toes follow the
# foot (its end site); no fingers, so the hand follows the wrist.
SMPL_FROM_DAZ = {
    "pelvis": "hip", "left_hip": "lThigh", "right_hip": "rThigh", "spine1": "abdomen",
    "left_knee": "lShin", "right_knee": "rShin", "spine2": "chest", "left_ankle": "lFoot",
    "right_ankle": "rFoot", "spine3": "chest", "left_foot": "lFoot_end",
    "right_foot": "rFoot_end", "neck": "neck", "left_collar": "lCollar",
    "right_collar": "rCollar", "head": "head", "left_shoulder": "lShldr",
    "right_shoulder": "rShldr", "left_elbow": "lForeArm", "right_elbow": "rForeArm",
    "left_wrist": "lHand", "right_wrist": "rHand", "left_hand": "lHand", "right_hand": "rHand",
}
# The 2008 release names the same joints differently (cmu_library.NAMES_2008: old -> new).
SMPL_FROM_CMU_2008 = {smpl: {new: old for old, new in cmu_library.NAMES_2008.items()}.get(c, c)
                      for smpl, c in SMPL_FROM_CMU.items()}
# A joint the motion library prunes (the fingers) stands in by the joint it hangs from.
STAND_INS = {"LeftFingerBase": "LeftHand", "RightFingerBase": "RightHand",
             "lhand": "LeftWrist", "rhand": "RightWrist"}
MAPPINGS = {"cgspeed-MB": SMPL_FROM_CMU, "cgspeed-MB-2008names": SMPL_FROM_CMU_2008,
            "cgspeed-Daz": SMPL_FROM_DAZ}
# The largest rest correction a cgspeed skeleton needs is 90 degrees (the 2008 release's
# lowered arms); a bone turned further points backwards: a broken mapping.
MAX_REST_CORRECTION_DEG = 120.0
# CMU bones shorter than this fraction of the skeleton's reach have no direction (the
# MotionBuilder skeleton's zero offsets); a fraction, since BVH files come in any unit.
MIN_BONE_FRACTION = 0.005


def smpl_sources(names: tuple[str, ...], where: str = "the clip") -> np.ndarray:
  """(24,) index of the CMU joint that each SMPL joint takes its frame from.

  Raises:
    InputError: an unknown skeleton or a mapped joint missing, naming `where`.
  """
  try:
    variant = cmu_library.skeleton_of(tuple(names))
  except InputError as error:
    raise InputError(f"{where}: {error}") from None
  index = {n: i for i, n in enumerate(names)}
  out, missing = [], []
  for smpl_name in skeleton.SMPL_JOINT_NAMES:
    name = MAPPINGS[variant][smpl_name]
    name = name if name in index else STAND_INS.get(name, name)
    if name not in index:
      missing.append(name)
    out.append(index.get(name, -1))
  if missing:
    raise InputError(f"{where} ({variant}) lacks the joints {sorted(set(missing))} that "
                     "SMPL's tree is mapped from")
  return np.asarray(out)


def world_rotations(parents: np.ndarray, local: np.ndarray) -> np.ndarray:
  """(J,) parents before children, (F, J, 3, 3) local -> (F, J, 3, 3) world rotations."""
  world = np.empty_like(local)
  for j, p in enumerate(parents):
    world[:, j] = local[:, j] if p < 0 else world[:, p] @ local[:, j]
  return world


def rest_positions(parents: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """(J,) parents, (J, 3) offsets -> (J, 3) joint positions with every rotation identity."""
  out = np.zeros((len(parents), 3))
  for j, p in enumerate(parents):
    out[j] = offsets[j] + (out[p] if p >= 0 else 0.0)
  return out


def _turn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The smallest rotation taking direction a to direction b (3, 3)."""
  a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
  axis = np.cross(a, b)
  sin, cos = np.linalg.norm(axis), float(a @ b)
  if sin < 1e-9:
    return np.eye(3) if cos > 0 else Rotation.from_rotvec([0.0, np.pi, 0.0]).as_matrix()
  return Rotation.from_rotvec(axis / sin * np.arctan2(sin, cos)).as_matrix()


def _first_child(j: int) -> int | None:
  children = [k for k, p in enumerate(skeleton.SMPL_PARENTS) if p == j]
  return children[0] if children else None


def followed_bone(parents: np.ndarray, offsets: np.ndarray, sources: np.ndarray,
                  j: int) -> np.ndarray:
  """(3,) the CMU rest bone that SMPL joint j's bone follows (module docstring)."""
  rest = rest_positions(parents, offsets)
  shortest = MIN_BONE_FRACTION * np.linalg.norm(rest - rest[0], axis=-1).max()
  k = _first_child(j)
  while k is not None:
    bone = rest[sources[k]] - rest[sources[j]]
    if np.linalg.norm(bone) > shortest:
      return bone
    k = _first_child(k)
  s = sources[j]
  if parents[s] < 0:
    raise InputError(f"SMPL's {skeleton.SMPL_JOINT_NAMES[j]} maps to the CMU root, which has "
                     "no bone to follow")
  return rest[s] - rest[parents[s]]   # no bone below: continue the one into it


def rest_corrections(parents: np.ndarray, offsets: np.ndarray, sources: np.ndarray,
                     where: str = "the clip") -> np.ndarray:
  """(24, 3, 3) C_j turning SMPL's rest bones onto the CMU skeleton's (module docstring).

  Args:
    parents, offsets: (J,), (J, 3) the CMU skeleton (mm or any unit).
    sources: (24,) `smpl_sources` of its joint names.

  Raises:
    InputError: a correction beyond MAX_REST_CORRECTION_DEG, naming the SMPL joint.
  """
  from geopose_jax.body import procedural  # pylint: disable=g-import-not-at-top
  check_rest_layout(parents, offsets, sources, where)
  smpl_rest, _ = procedural.rest_skeleton()
  out = np.broadcast_to(np.eye(3), (skeleton.SMPL_NUM_JOINTS, 3, 3)).copy()
  for j in range(1, skeleton.SMPL_NUM_JOINTS):
    k = _first_child(j)
    if k is None:
      continue
    out[j] = _turn(smpl_rest[k] - smpl_rest[j], followed_bone(parents, offsets, sources, j))
  angles = np.rad2deg(np.linalg.norm(Rotation.from_matrix(out).as_rotvec(), axis=-1))
  worst = int(np.argmax(angles))
  if angles[worst] > MAX_REST_CORRECTION_DEG:
    raise InputError(
        f"{where}: the rest pose turns SMPL's {skeleton.SMPL_JOINT_NAMES[worst]} bone by "
        f"{angles[worst]:.0f} degrees (at most {MAX_REST_CORRECTION_DEG:g}): a bone of the "
        "rest pose points backwards")
  return out


def check_rest_layout(parents: np.ndarray, offsets: np.ndarray, sources: np.ndarray,
                      where: str = "the clip") -> None:
  """InputError unless the rest skeleton stands as SMPL's does: head above the pelvis (y
  up), toes ahead of the ankles (facing +z), the left hip at +x of the right one."""
  rest = rest_positions(parents, offsets)
  at = lambda name: rest[sources[skeleton.SMPL_JOINT_NAMES.index(name)]]  # noqa: E731
  checks = (("the head is not above the pelvis (y up)", at("head")[1] > at("pelvis")[1]),
            ("the toes are not ahead of the ankles (facing +z)",
             at("left_foot")[2] > at("left_ankle")[2] and at("right_foot")[2] > at("right_ankle")[2]),
            ("the left hip is not at +x of the right one",
             at("left_hip")[0] > at("right_hip")[0]))
  for problem, ok in checks:
    if not ok:
      raise InputError(f"{where}: its rest skeleton does not stand as SMPL's: {problem}")


def smpl_rotations(parents: np.ndarray, offsets: np.ndarray, local: np.ndarray,
                   sources: np.ndarray, where: str = "the clip") -> np.ndarray:
  """(F, 24, 3, 3) SMPL joint rotations relative to the parent (joint 0: global).

  Args:
    parents, offsets: the CMU skeleton; local: (F, J, 3, 3) its local rotations.
    sources: (24,) `smpl_sources` of its joint names.
  """
  smpl_world = (world_rotations(parents, local)[:, sources]
                @ rest_corrections(parents, offsets, sources, where))
  out = np.empty_like(smpl_world)
  for j, p in enumerate(skeleton.SMPL_PARENTS):
    own = smpl_world[:, j]
    out[:, j] = own if p < 0 else np.swapaxes(smpl_world[:, p], -1, -2) @ own
  return out


def to_axis_angle(rotations: np.ndarray) -> np.ndarray:
  """(N, 24, 3, 3) -> (N, 72) float32 axis-angle."""
  theta = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_rotvec()
  return theta.reshape(len(rotations), 72).astype(np.float32)


def library_theta(clip: motion_library.LibraryClip, frames: np.ndarray) -> np.ndarray:
  """(N, 72) SMPL axis-angle of a motion-library clip at `frames` (indices, 50 fps).

  Raises:
    InputError: the clip's skeleton does not map onto SMPL's tree (the reason named).
  """
  where = f"motion library clip {clip.info.clip}"
  sources = smpl_sources(clip.joints, where)
  rotations = smpl_rotations(clip.parents, clip.offsets, clip.rotations[frames], sources,
                             where)
  theta = to_axis_angle(rotations)
  if not np.all(np.isfinite(theta)):
    raise InputError(f"{where}: non-finite SMPL parameters")
  return theta


def bvh_rotations(motion: bvh_lib.BvhMotion) -> np.ndarray:
  """(F, 24, 3, 3) SMPL joint rotations of every frame of a parsed cgspeed BVH file."""
  local, _ = bvh_lib.local_transforms(motion)
  sources = smpl_sources(motion.names, motion.path or "the BVH file")
  return smpl_rotations(motion.parents, motion.offsets, local, sources,
                        motion.path or "the BVH file")


def mirror_axis_angle(theta: np.ndarray) -> np.ndarray:
  """(..., 72) SMPL axis-angle -> the mirror-image pose (x -> -x): left and right joints
  swap and each rotation vector becomes (x, -y, -z)."""
  per_joint = theta.reshape(theta.shape[:-1] + (24, 3))
  mirrored = per_joint[..., np.asarray(skeleton.SMPL_FLIP_PERMUTATION), :] * np.array([1, -1, -1])
  return mirrored.reshape(theta.shape)
