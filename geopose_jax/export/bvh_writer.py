"""Human3.6M-17 poses as a BVH motion file: fixed bone lengths, rotations solved from joints.

The skeleton is H36M-17's tree rooted at the pelvis (`Hip`). Bone lengths are the median
over the sequence of each bone's length. A joint with several children (the pelvis: both
hips and the spine; the thorax: neck and both shoulders) cannot aim all its bones with one
rotation when their angles change (shrugging), so each of its bones starts at a zero-length
link joint (`Hip_RHip`, `Thorax_Neck`, ...) with its own rotation; then every bone points
exactly where the input says, and forward kinematics reproduces the input joints wherever
the input's bone lengths equal the medians.

Rotations: the root's orientation is the best rotation (Kabsch) of the rest pelvis onto the
posed one; every other joint gets the smallest rotation that turns its rest bone onto the
posed bone (the twist about a bone is not observable from joint positions and is left
zero). Channels are `Zrotation Xrotation Yrotation` (local R = Rz Rx Ry, degrees), the root
also has `Xposition Yposition Zposition`.

Frames: the input is camera-frame 3D (x right, y down, z forward). The BVH world is Y-up:
(x, -y, -z), a rotation of 180 degrees about x, so a person facing the camera faces +Z.
The rest pose is a T-pose: legs down, spine and head up, arms straight out sideways
(left = +X), in millimetres.
"""

from __future__ import annotations

import os

import numpy as np
import tqdm

from geopose_jax import skeleton
from geopose_jax.errors import InputError

BVH_JOINT_NAMES = ("Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine",
                   "Thorax", "Neck", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder",
                   "RElbow", "RWrist")
_UP, _DOWN, _LEFT, _RIGHT = (np.array(v, np.float64) for v in
                             ((0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0)))
# Rest direction of the bone ending at each H36M joint (Y up, the person's left = +X).
_REST_DIRECTIONS = {
    1: _RIGHT, 2: _DOWN, 3: _DOWN, 4: _LEFT, 5: _DOWN, 6: _DOWN, 7: _UP, 8: _UP, 9: _UP,
    10: _UP, 11: _LEFT, 12: _LEFT, 13: _LEFT, 14: _RIGHT, 15: _RIGHT, 16: _RIGHT}
_CAMERA_TO_BVH = np.diag([1.0, -1.0, -1.0])
ROTATION_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")


def _children(parents) -> dict[int, list[int]]:
  out: dict[int, list[int]] = {j: [] for j in range(len(parents))}
  for j, p in enumerate(parents):
    if p >= 0:
      out[p].append(j)
  return out


def bvh_skeleton(parents=skeleton.H36M_PARENTS):
  """The BVH joint list: (name, parent index in this list, H36M joint or -1 for a link).

  Parents precede children; a link sits between a branching joint and each of its children.
  """
  children = _children(parents)
  joints: list[tuple[str, int, int]] = []

  def add(h36m: int, parent: int) -> None:
    joints.append((BVH_JOINT_NAMES[h36m], parent, h36m))
    me = len(joints) - 1
    kids = children[h36m]
    for child in kids:
      if len(kids) > 1:
        joints.append((f"{BVH_JOINT_NAMES[h36m]}_{BVH_JOINT_NAMES[child]}", me, -1))
        add(child, len(joints) - 1)
      else:
        add(child, me)

  add(skeleton.H36M_ROOT, -1)
  return joints


def median_bone_lengths(poses: np.ndarray, parents=skeleton.H36M_PARENTS) -> np.ndarray:
  """(17,) median over frames of each joint's distance to its parent (0 for the root)."""
  lengths = np.zeros(len(parents))
  for j, p in enumerate(parents):
    if p >= 0:
      lengths[j] = np.median(np.linalg.norm(poses[:, j] - poses[:, p], axis=-1))
  return lengths


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(F, 3, 3) smallest rotations turning unit vectors a (F, 3) onto b (F, 3)."""
  axis = np.cross(a, b)
  sin = np.linalg.norm(axis, axis=-1)
  cos = np.sum(a * b, axis=-1)
  # Opposite vectors: any axis perpendicular to a.
  fallback = np.cross(a, np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
  axis = np.where((sin < 1e-9)[:, None], fallback, axis)
  axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
  angle = np.arctan2(sin, cos)
  k = np.zeros((len(a), 3, 3))
  k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
  k = k - np.swapaxes(k, 1, 2)
  s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
  return np.eye(3) + s * k + (1 - c) * (k @ k)


def _kabsch(rest: np.ndarray, posed: np.ndarray) -> np.ndarray:
  """(F, 3, 3) rotations R minimising sum |R rest_i - posed_i|^2; rest (K, 3), posed (F, K, 3)."""
  h = np.einsum("ki,fkj->fij", rest, posed)
  u, _, vt = np.linalg.svd(h)
  d = np.sign(np.linalg.det(np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)))
  fix = np.broadcast_to(np.eye(3), h.shape).copy()
  fix[:, 2, 2] = d
  return np.swapaxes(vt, 1, 2) @ fix @ np.swapaxes(u, 1, 2)


def euler_zxy_degrees(rotations: np.ndarray) -> np.ndarray:
  """(..., 3, 3) rotations -> (..., 3) degrees (z, x, y) with R = Rz(z) Rx(x) Ry(y)."""
  m = rotations
  x = np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
  z = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
  y = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
  # Gimbal lock (x = +-90 degrees): only z + y or z - y is defined; put it all in z.
  locked = np.abs(m[..., 2, 1]) > 1 - 1e-9
  z = np.where(locked, np.arctan2(m[..., 1, 0], m[..., 0, 0]), z)
  y = np.where(locked, 0.0, y)
  return np.degrees(np.stack([z, x, y], axis=-1))


def solve_motion(poses_cam_mm: np.ndarray, show_progress: bool = False):
  """Fixed-length skeleton and per-frame channels reproducing H36M-17 poses.

  Args:
    poses_cam_mm: (F, 17, 3) camera-frame joints in millimetres.
    show_progress: a progress bar over the joints.

  Returns:
    joints: bvh_skeleton() list; offsets (B, 3) rest offsets in mm (B BVH joints);
    motion (F, 3 + 3 B) channel values (root position, then z, x, y degrees per joint).
  """
  poses = np.asarray(poses_cam_mm, np.float64)
  if poses.ndim != 3 or poses.shape[1:] != (17, 3) or len(poses) == 0:
    raise InputError(f"BVH export needs poses of shape (frames >= 1, 17, 3); got "
                     f"{poses.shape}")
  if not np.isfinite(poses).all():
    raise InputError("BVH export: the poses hold NaN or infinite coordinates")
  world = poses @ _CAMERA_TO_BVH.T
  lengths = median_bone_lengths(world)
  joints = bvh_skeleton()
  count = len(poses)
  offsets = np.zeros((len(joints), 3))
  for b, (_, _, h36m) in enumerate(joints):
    if h36m > 0:
      offsets[b] = lengths[h36m] * _REST_DIRECTIONS[h36m]
  # Global rotation of every BVH joint; a joint's rotation aims the bone to its one child.
  global_rot = np.zeros((len(joints), count, 3, 3))
  local_rot = np.zeros((len(joints), count, 3, 3))
  position = {h36m: world[:, h36m] for h36m in range(17)}
  kids = {b: [c for c, (_, p, _) in enumerate(joints) if p == b] for b in range(len(joints))}
  steps = tqdm.tqdm(range(len(joints)), desc="solving BVH rotations", unit="joint",
                    disable=not show_progress, leave=False)
  for b in steps:
    _, parent, h36m = joints[b]
    parent_rot = global_rot[parent] if parent >= 0 else np.broadcast_to(np.eye(3),
                                                                         (count, 3, 3))
    if parent < 0:
      # Root: fit the rest pelvis (its link children's bones) to the posed one.
      targets = [kids[k][0] for k in kids[b]]
      rest = np.stack([offsets[t] for t in targets])
      posed = np.stack([position[joints[t][2]] - position[h36m] for t in targets], axis=1)
      g = _kabsch(rest, posed)
    elif len(kids[b]) == 1:
      child = kids[b][0]
      start = position[h36m] if h36m >= 0 else position[joints[parent][2]]
      bone = position[joints[child][2]] - start
      rest = offsets[child] / max(np.linalg.norm(offsets[child]), 1e-12)
      norm = np.linalg.norm(bone, axis=-1, keepdims=True)
      # A zero-length posed bone keeps the parent's orientation.
      local_dir = np.einsum("fba,fb->fa", parent_rot, bone / np.maximum(norm, 1e-12))
      local_dir = np.where(norm > 1e-9, local_dir, rest)
      g = parent_rot @ _rotation_between(np.broadcast_to(rest, (count, 3)), local_dir)
    else:
      g = np.array(parent_rot)
    global_rot[b] = g
    local_rot[b] = np.swapaxes(parent_rot, 1, 2) @ g
  angles = euler_zxy_degrees(local_rot)  # (B, F, 3)
  motion = np.concatenate([world[:, skeleton.H36M_ROOT]] + list(angles), axis=-1)
  return joints, offsets, motion


def _end_offset(offsets: np.ndarray, b: int) -> np.ndarray:
  # A leaf's end site continues its bone by a quarter (viewers draw a stub).
  return offsets[b] * 0.25


def bvh_text(joints, offsets: np.ndarray, motion: np.ndarray, frame_time: float) -> str:
  """The BVH file text of a skeleton from `solve_motion` and its channel table."""
  kids = {b: [c for c, (_, p, _) in enumerate(joints) if p == b] for b in range(len(joints))}
  lines = ["HIERARCHY"]

  def emit(b: int, depth: int) -> None:
    pad = "  " * depth
    name, parent, _ = joints[b]
    lines.append(f"{pad}{'ROOT' if parent < 0 else 'JOINT'} {name}")
    lines.append(f"{pad}{{")
    lines.append(f"{pad}  OFFSET " + " ".join(f"{v:.6f}" for v in offsets[b]))
    chans = ("Xposition", "Yposition", "Zposition") if parent < 0 else ()
    chans += ROTATION_CHANNELS
    lines.append(f"{pad}  CHANNELS {len(chans)} {' '.join(chans)}")
    for c in kids[b]:
      emit(c, depth + 1)
    if not kids[b]:
      lines.append(f"{pad}  End Site")
      lines.append(f"{pad}  {{")
      lines.append(f"{pad}    OFFSET " + " ".join(f"{v:.6f}" for v in
                                                  _end_offset(offsets, b)))
      lines.append(f"{pad}  }}")
    lines.append(f"{pad}}}")

  emit(0, 0)
  lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {frame_time:.8f}"]
  lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
  return "\n".join(lines) + "\n"


def write_bvh(path: str | os.PathLike, poses_cam_mm: np.ndarray, fps: float = 50.0,
              show_progress: bool = False) -> None:
  """Writes (F, 17, 3) camera-frame mm poses as a BVH file (via a temporary name)."""
  if not fps > 0:
    raise InputError(f"BVH export: fps must be positive, got {fps}")
  joints, offsets, motion = solve_motion(poses_cam_mm, show_progress)
  path = os.fspath(path)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="ascii") as f:
    f.write(bvh_text(joints, offsets, motion, 1.0 / fps))
  os.replace(tmp, path)


def bvh_to_camera(points_bvh: np.ndarray) -> np.ndarray:
  """(..., 3) BVH world points (Y up) -> camera-frame points (the map is its own inverse)."""
  return np.asarray(points_bvh) @ _CAMERA_TO_BVH.T
