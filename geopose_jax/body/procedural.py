"""A procedural body in SMPL's format, the default when no SMPL model file is given.

This is NOT the SMPL model (which is licence-gated and cannot be shipped): it is a mesh of
overlapping closed tubes (torso, head, neck, limb segments, hands, feet) built around a
24-joint T-pose skeleton with SMPL's joint names and tree, so that everything written for
SMPL — skinning, joint maps, priors, silhouettes — runs on it unchanged. It has

- smooth skinning weights (a Gaussian of each vertex's distance to the nearby bones,
  scaled by the bone's thickness);
- a J_regressor that reproduces the rest joints exactly from nearby vertices and moves them
  with the surface when the shape changes;
- 10 shape directions with readable meanings (`SHAPE_DIRECTIONS`), a few centimetres per
  unit beta, so that beta ~ N(0, 1) gives plausible bodies;
- zero pose correctives (posedirs), in SMPL's (V, 3, 207) layout.

Coordinates follow SMPL: metres, y up, the body faces +z, its left side is +x.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from geopose_jax import skeleton
from geopose_jax.body.smpl import BodyModel, make_body_model

MODEL_NAME = "procedural body (not SMPL)"
SHAPE_DIRECTIONS = (
    "stature", "leg_length", "arm_length", "girth", "belly", "shoulder_width", "hip_width",
    "torso_length", "head_size", "limb_girth")

# Rest (T-pose) joints, for the subject's left side; right = mirrored x.
_LEFT_JOINTS = {
    "pelvis": (0.0, -0.24, 0.02), "left_hip": (0.075, -0.33, 0.0),
    "spine1": (0.0, -0.12, -0.01), "left_knee": (0.10, -0.71, 0.01),
    "spine2": (0.0, 0.01, 0.0), "left_ankle": (0.085, -1.12, -0.03),
    "spine3": (0.0, 0.07, 0.02), "left_foot": (0.11, -1.18, 0.09),
    "neck": (0.0, 0.29, -0.02), "left_collar": (0.07, 0.20, -0.01),
    "head": (0.0, 0.36, 0.03), "left_shoulder": (0.18, 0.23, -0.02),
    "left_elbow": (0.44, 0.22, -0.04), "left_wrist": (0.69, 0.22, -0.04),
    "left_hand": (0.78, 0.21, -0.05),
}
# Where each joint's bone ends: its main child, or a tip for the leaves.
_BONE_END = {
    "pelvis": "spine1", "left_hip": "left_knee", "spine1": "spine2", "left_knee": "left_ankle",
    "spine2": "spine3", "left_ankle": "left_foot", "spine3": "neck",
    "left_foot": (0.12, -1.18, 0.18), "neck": "head", "left_collar": "left_shoulder",
    "head": (0.0, 0.55, 0.03), "left_shoulder": "left_elbow", "left_elbow": "left_wrist",
    "left_wrist": "left_hand", "left_hand": (0.88, 0.21, -0.05),
}
# Bone thickness (m): scales how far a bone's skinning influence reaches.
_BONE_RADIUS = {
    "pelvis": 0.14, "left_hip": 0.08, "spine1": 0.13, "left_knee": 0.05, "spine2": 0.13,
    "left_ankle": 0.045, "spine3": 0.14, "left_foot": 0.04, "neck": 0.05, "left_collar": 0.06,
    "head": 0.09, "left_shoulder": 0.05, "left_elbow": 0.04, "left_wrist": 0.035,
    "left_hand": 0.03,
}


@dataclasses.dataclass(frozen=True)
class _Part:
  """A closed tube from `start` to `end` with elliptical cross-sections.

  radii: (n, 2) cross-section half-axes along (`side`, side x axis) at n evenly spaced
  points from start to end; `roundness` is the superellipse exponent of the profile
  (2: ellipsoid, larger: flat sides with rounded caps); `bones`: joints it may be skinned to.
  """
  name: str
  start: tuple[float, float, float]
  end: tuple[float, float, float]
  radii: tuple[tuple[float, float], ...]
  side: tuple[float, float, float]
  bones: tuple[str, ...]
  rings: int
  around: int
  roundness: float = 4.0
  kind: str = "torso"     # torso | leg | arm | head: which shape directions act on it


def _left_parts() -> list[_Part]:
  x, y = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
  return [
      _Part("torso", (0.0, -0.42, 0.0), (0.0, 0.30, -0.02),
            ((0.15, 0.10), (0.16, 0.105), (0.135, 0.095), (0.15, 0.11), (0.17, 0.10),
             (0.11, 0.07)), x,
            ("pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3", "neck",
             "left_collar", "right_collar"), 36, 32, 5.0, "torso"),
      _Part("neck", (0.0, 0.22, -0.01), (0.0, 0.40, 0.01), ((0.055, 0.055),), x,
            ("spine3", "neck", "head"), 6, 16, 6.0, "head"),
      _Part("head", (0.0, 0.33, 0.03), (0.0, 0.57, 0.03), ((0.075, 0.09), (0.085, 0.10),
                                                          (0.075, 0.09)), x,
            ("neck", "head"), 20, 24, 2.0, "head"),
      _Part("left_upper_arm", (0.13, 0.225, -0.02), (0.47, 0.22, -0.04),
            ((0.055, 0.05), (0.045, 0.042)), y,
            ("left_collar", "left_shoulder", "left_elbow"), 16, 16, 5.0, "arm"),
      _Part("left_forearm", (0.42, 0.22, -0.04), (0.71, 0.22, -0.04),
            ((0.042, 0.04), (0.032, 0.028)), y,
            ("left_shoulder", "left_elbow", "left_wrist"), 16, 14, 5.0, "arm"),
      _Part("left_hand", (0.68, 0.215, -0.045), (0.90, 0.21, -0.05),
            ((0.018, 0.045), (0.014, 0.04)), y,
            ("left_elbow", "left_wrist", "left_hand"), 8, 12, 3.0, "arm"),
      _Part("left_thigh", (0.085, -0.27, 0.0), (0.10, -0.75, 0.01),
            ((0.085, 0.085), (0.06, 0.06)), x,
            ("pelvis", "left_hip", "left_knee"), 20, 20, 5.0, "leg"),
      _Part("left_shin", (0.10, -0.68, 0.01), (0.085, -1.14, -0.03),
            ((0.058, 0.058), (0.04, 0.04)), x,
            ("left_hip", "left_knee", "left_ankle"), 20, 16, 5.0, "leg"),
      _Part("left_foot", (0.085, -1.16, -0.08), (0.12, -1.19, 0.19),
            ((0.042, 0.035), (0.048, 0.022)), x,
            ("left_knee", "left_ankle", "left_foot"), 10, 12, 3.0, "leg"),
  ]


def _mirror_name(name: str) -> str:
  return name.replace("left_", "right_") if name.startswith("left_") else name


def _mirror(point):
  return (-point[0], point[1], point[2])


def _all_parts() -> list[_Part]:
  parts = []
  for part in _left_parts():
    parts.append(part)
    if part.name.startswith("left_"):
      parts.append(dataclasses.replace(
          part, name=_mirror_name(part.name), start=_mirror(part.start), end=_mirror(part.end),
          bones=tuple(_mirror_name(b) for b in part.bones)))
  return parts


def rest_skeleton() -> tuple[np.ndarray, np.ndarray]:
  """(24, 3) rest joints and (24, 3) bone end points in SMPL order."""
  joints, ends = {}, {}
  for name, pos in _LEFT_JOINTS.items():
    end = _BONE_END[name]
    joints[name] = pos
    ends[name] = end
    if name.startswith("left_"):
      joints[_mirror_name(name)] = _mirror(pos)
      ends[_mirror_name(name)] = end if not isinstance(end, str) else _mirror_name(end)
      if not isinstance(end, str):
        ends[_mirror_name(name)] = _mirror(end)
  names = skeleton.SMPL_JOINT_NAMES
  joint_array = np.array([joints[n] for n in names], np.float64)
  end_array = np.array([joints[ends[n]] if isinstance(ends[n], str) else ends[n]
                        for n in names], np.float64)
  return joint_array, end_array


def _bone_radius(name: str) -> float:
  return _BONE_RADIUS[name.replace("right_", "left_")]


def _tube(part: _Part, detail: float):
  """Vertices, faces (local indices), axis points and axis parameter t of one part."""
  rings = max(3, int(round(part.rings * detail)))
  around = max(6, int(round(part.around * detail)))
  start, end = np.array(part.start), np.array(part.end)
  axis = end - start
  direction = axis / np.linalg.norm(axis)
  side = np.array(part.side, np.float64)
  e1 = side - direction * (side @ direction)
  e1 /= np.linalg.norm(e1)
  e2 = np.cross(direction, e1)
  t = np.arange(1, rings + 1) / (rings + 1)
  radii = np.array(part.radii, np.float64)
  control = np.linspace(0.0, 1.0, len(radii))
  r1 = np.interp(t, control, radii[:, 0])
  r2 = np.interp(t, control, radii[:, 1])
  profile = (1.0 - np.abs(2.0 * t - 1.0) ** part.roundness) ** (1.0 / part.roundness)
  angle = 2.0 * np.pi * np.arange(around) / around
  centre = start + t[:, None] * axis                                    # (rings, 3)
  offset = ((profile * r1)[:, None, None] * np.cos(angle)[None, :, None] * e1
            + (profile * r2)[:, None, None] * np.sin(angle)[None, :, None] * e2)
  ring_vertices = (centre[:, None, :] + offset).reshape(-1, 3)
  vertices = np.concatenate([start[None], ring_vertices, end[None]])
  axis_t = np.concatenate([[0.0], np.repeat(t, around), [1.0]])
  faces = []
  ring_index = lambda k, i: 1 + k * around + (i % around)  # noqa: E731
  for i in range(around):
    faces.append((0, ring_index(0, i + 1), ring_index(0, i)))
    for k in range(rings - 1):
      a, b = ring_index(k, i), ring_index(k, i + 1)
      c, d = ring_index(k + 1, i + 1), ring_index(k + 1, i)
      faces += [(a, b, c), (a, c, d)]
    last = len(vertices) - 1
    faces.append((last, ring_index(rings - 1, i), ring_index(rings - 1, i + 1)))
  axis_points = start + axis_t[:, None] * axis
  return vertices, np.array(faces, np.int64), axis_points, axis_t


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(N, 3) points, (J, 3) segment ends -> (N, J) distances to the segments."""
  ab = b - a
  ap = points[:, None, :] - a[None]
  u = np.clip(np.sum(ap * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
  return np.linalg.norm(ap - u[..., None] * ab, axis=-1)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
  s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
  return s * s * (3.0 - 2.0 * s)


def _shape_directions(vertices, axis_points, axis_t, part_index, parts, joints) -> np.ndarray:
  """(V, 3, 10) displacements per unit beta, one per entry of SHAPE_DIRECTIONS."""
  names = skeleton.SMPL_JOINT_NAMES
  radial = vertices - axis_points
  kinds = np.array([parts[p].kind for p in part_index])
  is_leg, is_arm = kinds == "leg", kinds == "arm"
  is_torso = kinds == "torso"
  left = axis_points[:, 0] >= 0.0
  sign = np.where(left, 1.0, -1.0)
  hip = np.where(left[:, None], joints[names.index("left_hip")], joints[names.index("right_hip")])
  shoulder = np.where(left[:, None], joints[names.index("left_shoulder")],
                      joints[names.index("right_shoulder")])
  pelvis_y = joints[names.index("pelvis"), 1]
  shoulder_y = joints[names.index("left_shoulder"), 1]
  head = joints[names.index("head")]
  torso_t = np.where(is_torso, axis_t, 0.0)
  dirs = np.zeros(vertices.shape + (len(SHAPE_DIRECTIONS),))
  dirs[..., 0] = 0.04 * vertices                                          # stature
  dirs[..., 1] = np.where(is_leg[:, None], 0.06 * (axis_points - hip), 0.0)
  dirs[..., 2] = np.where(is_arm[:, None], 0.07 * (axis_points - shoulder), 0.0)
  dirs[..., 3] = 0.08 * radial                                            # girth
  dirs[..., 4] = np.where(is_torso[:, None], 0.12 * radial * _smoothstep(0.0, 0.3, torso_t)[:, None]
                          * (1.0 - _smoothstep(0.6, 0.9, torso_t))[:, None], 0.0)
  upper = _smoothstep(0.6, 0.95, torso_t)
  dirs[:, 0, 5] = np.where(is_arm, 0.025 * sign, np.where(is_torso, 0.2 * radial[:, 0] * upper, 0))
  lower = 1.0 - _smoothstep(0.05, 0.35, torso_t)
  dirs[:, 0, 6] = np.where(is_leg, 0.02 * sign, np.where(is_torso, 0.15 * radial[:, 0] * lower, 0))
  dirs[:, 1, 7] = np.where(is_leg, 0.0, 0.08 * np.clip(vertices[:, 1] - pelvis_y, 0.0,
                                                        shoulder_y - pelvis_y))
  head_part = np.array([parts[p].name == "head" for p in part_index])
  dirs[..., 8] = np.where(head_part[:, None], 0.08 * (vertices - head), 0.0)
  dirs[..., 9] = np.where((is_leg | is_arm)[:, None], 0.1 * radial, 0.0)
  return dirs


def _joint_regressor(vertices: np.ndarray, axis_points: np.ndarray, joints: np.ndarray,
                     neighbours: int = 64) -> np.ndarray:
  """(J, V) weights over the vertices whose tube axis passes nearest each joint.

  Whole rings around an axis have their centroid on the axis, so the weights start as a
  Gaussian of the axis-to-joint distance and are then corrected (least norm) to sum to 1 and
  reproduce the rest joint exactly; the joint then moves with the surrounding surface.
  """
  regressor = np.zeros((len(joints), len(vertices)))
  for j, joint in enumerate(joints):
    dist = np.linalg.norm(axis_points - joint, axis=-1)
    nearest = np.argsort(dist)[:neighbours]
    w0 = np.exp(-(dist[nearest] / (dist[nearest].max() + 1e-9)) ** 2)
    w0 /= w0.sum()
    constraints = np.concatenate([vertices[nearest].T, np.ones((1, neighbours))])  # (4, K)
    target = np.concatenate([joint, [1.0]])
    residual = target - constraints @ w0
    w = w0 + constraints.T @ np.linalg.lstsq(constraints @ constraints.T, residual, rcond=None)[0]
    regressor[j, nearest] = w
  return regressor


@functools.lru_cache(maxsize=4)
def _build_arrays(detail: float):
  parts = _all_parts()
  joints, bone_ends = rest_skeleton()
  names = skeleton.SMPL_JOINT_NAMES
  vertices, faces, axis_points, axis_t, part_index = [], [], [], [], []
  offset = 0
  for index, part in enumerate(parts):
    v, f, p, t = _tube(part, detail)
    vertices.append(v)
    faces.append(f + offset)
    axis_points.append(p)
    axis_t.append(t)
    part_index.append(np.full(len(v), index))
    offset += len(v)
  vertices, faces = np.concatenate(vertices), np.concatenate(faces)
  axis_points, axis_t = np.concatenate(axis_points), np.concatenate(axis_t)
  part_index = np.concatenate(part_index)

  distance = _segment_distance(vertices, joints, bone_ends)                    # (V, J)
  scale = np.array([_bone_radius(n) for n in names])
  allowed = np.zeros_like(distance, dtype=bool)
  for index, part in enumerate(parts):
    allowed[np.ix_(part_index == index, [names.index(b) for b in part.bones])] = True
  weights = np.where(allowed, np.exp(-(distance / scale) ** 2), 0.0)
  weights = np.where(weights < 1e-4 * weights.max(-1, keepdims=True), 0.0, weights)
  weights /= weights.sum(-1, keepdims=True)

  shapedirs = _shape_directions(vertices, axis_points, axis_t, part_index, parts, joints)
  regressor = _joint_regressor(vertices, axis_points, joints)
  posedirs = np.zeros(vertices.shape + (9 * (len(names) - 1),))
  return vertices, shapedirs, posedirs, regressor, weights, faces


def procedural_body(detail: float = 1.0, num_betas: int | None = None) -> BodyModel:
  """The procedural SMPL-format body (NOT SMPL; see the module docstring).

  Args:
    detail: mesh resolution factor; 1.0 gives about 4.6k vertices and 9k faces, 1.25 about
      7k vertices (SMPL has 6890).
    num_betas: keep the first `num_betas` of its 10 shape directions (None: all).
  """
  v, shapedirs, posedirs, regressor, weights, faces = _build_arrays(float(detail))
  return make_body_model(v, shapedirs, posedirs, regressor, weights, faces,
                         skeleton.SMPL_PARENTS, name=MODEL_NAME, num_betas=num_betas)
