"""A person built from volumes around a Human3.6M-17 pose, with per-subject build and clothes.

Limbs and the neck are capsules between joints; pelvis, belly, chest, head, hands and feet
are ellipsoids oriented by the body's own frame (up along the spine, left from the hips and
shoulders, forward = left x up). Every volume also carries a texture frame and a part id so
the renderer can paint patterns that tell front from back and left from right: a chest
emblem on the front only, stripes on the back, a coloured left sleeve, a stripe down the
outside of the left trouser leg, a face with eyes on the front of the head, hair behind.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

# Part ids (index into PART_PALETTE for the base colour).
PELVIS, BELLY, CHEST, HEAD, NECK = 0, 1, 2, 3, 4
L_UPPER_ARM, R_UPPER_ARM, L_FOREARM, R_FOREARM, L_HAND, R_HAND = 5, 6, 7, 8, 9, 10
L_THIGH, R_THIGH, L_SHIN, R_SHIN, L_FOOT, R_FOOT = 11, 12, 13, 14, 15, 16
NUM_PARTS = 17

# Palette slots.
SKIN, HAIR, SHIRT, SLEEVE, TROUSERS, STRIPE, SHOES, EMBLEM, EYES = range(9)
NUM_COLOURS = 9
# Base palette slot of each part.
PART_PALETTE = np.array([TROUSERS, SHIRT, SHIRT, SKIN, SKIN, SLEEVE, SHIRT, SKIN, SKIN, SKIN,
                         SKIN, TROUSERS, TROUSERS, TROUSERS, TROUSERS, SHOES, SHOES], np.int32)

# Capsules: (part, joint a, joint b).
_CAPSULES = ((L_THIGH, 4, 5), (R_THIGH, 1, 2), (L_SHIN, 5, 6), (R_SHIN, 2, 3),
             (L_UPPER_ARM, 11, 12), (R_UPPER_ARM, 14, 15), (L_FOREARM, 12, 13),
             (R_FOREARM, 15, 16))
CAPSULE_PARTS = np.array([p for p, _, _ in _CAPSULES] + [NECK], np.int32)
ELLIPSOID_PARTS = np.array([PELVIS, BELLY, CHEST, HEAD, L_HAND, R_HAND, L_FOOT, R_FOOT],
                           np.int32)


@dataclasses.dataclass(frozen=True)
class Appearance:
  """A subject's build (mm) and clothes (RGB in [0, 1])."""
  thigh: float
  shin: float
  upper_arm: float
  forearm: float
  girth: float          # scales pelvis, belly and chest depth and width
  head: float           # scales the head ellipsoid
  colours: tuple        # NUM_COLOURS RGB triples, in palette-slot order

  def palette(self) -> np.ndarray:
    return np.asarray(self.colours, np.float32)


def _rgb(hex_code: str) -> tuple[float, float, float]:
  return tuple(int(hex_code[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def _outfit(skin, hair, shirt, sleeve, trousers, stripe, shoes, emblem, eyes="#1a1410"):
  return tuple(_rgb(c) for c in (skin, hair, shirt, sleeve, trousers, stripe, shoes, emblem,
                                 eyes))


APPEARANCES = {
    "S1": Appearance(88, 62, 50, 41, 1.00, 1.00, _outfit(
        "#e0b79a", "#3b2a1e", "#2f6db5", "#e8c547", "#37404d", "#e8e8e8", "#f2f2f2", "#f5f5f0")),
    "S5": Appearance(84, 58, 44, 37, 0.92, 0.97, _outfit(
        "#c99373", "#141010", "#b8334a", "#f0f0f0", "#2b2b3a", "#f0d23c", "#202020", "#ffe27a")),
    "S6": Appearance(95, 68, 55, 45, 1.12, 1.03, _outfit(
        "#f1cbb0", "#8a5a2b", "#3f8f4e", "#1e1e6e", "#6b5a44", "#d94a2b", "#5a3a22", "#111111")),
    "S7": Appearance(86, 60, 47, 39, 0.96, 0.98, _outfit(
        "#8d5a3c", "#0d0d0d", "#e3e0d6", "#c0392b", "#1f3b66", "#f39c12", "#e6e6e6", "#1f6f8b")),
    "S8": Appearance(92, 66, 54, 44, 1.08, 1.02, _outfit(
        "#e7b998", "#b8893c", "#2b2b2b", "#2ecc71", "#8a8f96", "#1b1b1b", "#b03a2e", "#e74c3c")),
    "S9": Appearance(90, 64, 52, 43, 1.05, 1.01, _outfit(
        "#d3a27f", "#2a1a10", "#f1c40f", "#8e44ad", "#2c3e50", "#ecf0f1", "#34495e", "#c0392b")),
    "S11": Appearance(87, 61, 49, 40, 0.98, 0.99, _outfit(
        "#b57a55", "#4a3020", "#7f8c8d", "#e67e22", "#4b2e1e", "#3498db", "#ecf0f1", "#16a085")),
}


class Volumes(NamedTuple):
  """The volumes of one posed body (world mm), as arrays the renderer consumes.

  Attributes:
    cap_a, cap_b: (C, 3) capsule end points; cap_r: (C,) radii.
    ell_centre: (E, 3); ell_inv: (E, 3, 3) maps a world offset from the centre to the
      unit sphere (q = ell_inv @ (x - centre)).
    tex_origin: (C + E, 3), tex_inv: (C + E, 3, 3) texture coordinates
      q = tex_inv @ (x - origin): for capsules (side, front, along) with along in [0, 1]
      from a to b and the cross-section radius 1; for ellipsoids the unit-sphere coordinates
      in (left, forward, up) order of the body.
    part: (C + E,) part ids.
  """
  cap_a: np.ndarray
  cap_b: np.ndarray
  cap_r: np.ndarray
  ell_centre: np.ndarray
  ell_inv: np.ndarray
  tex_origin: np.ndarray
  tex_inv: np.ndarray
  part: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def body_frame(pose: np.ndarray) -> np.ndarray:
  """(17, 3) pose -> (3, 3) rows (left, forward, up) of the torso."""
  up = _unit(pose[8] - pose[0])
  left = (pose[4] - pose[1]) + (pose[11] - pose[14])
  left = _unit(left - (left @ up) * up)
  forward = np.cross(left, up)
  return np.stack([left, forward, up])


def _ellipsoid(centre, axes_rows, semi) -> tuple[np.ndarray, np.ndarray]:
  """Centre, rows = unit axes (3, 3), semi-axes (3,) -> (centre, inverse map)."""
  return centre, axes_rows / np.asarray(semi, np.float64)[:, None]


def _limb_axes(a, b, side_hint) -> np.ndarray:
  along = _unit(b - a)
  side = side_hint - (side_hint @ along) * along
  if np.linalg.norm(side) < 1e-6:
    side = np.cross(along, [0.0, 0.0, 1.0])
  side = _unit(side)
  front = np.cross(along, side)
  return np.stack([side, front, along])


def build_volumes(pose: np.ndarray, look: Appearance) -> Volumes:
  """Volumes of a person in `pose` ((17, 3) world mm, Z up) dressed as `look`."""
  pose = np.asarray(pose, np.float64)
  left, forward, up = frame = body_frame(pose)
  world_up = np.array([0.0, 0.0, 1.0])
  radii = {L_THIGH: look.thigh, R_THIGH: look.thigh, L_SHIN: look.shin, R_SHIN: look.shin,
           L_UPPER_ARM: look.upper_arm, R_UPPER_ARM: look.upper_arm,
           L_FOREARM: look.forearm, R_FOREARM: look.forearm}

  # Head: from the head top down along the neck direction.
  head_dir = _unit(pose[10] - pose[8])
  head_up = 115.0 * look.head
  head_centre = pose[10] - head_dir * (head_up - 5.0)
  head_left = _unit(left - (left @ head_dir) * head_dir)
  head_rows = np.stack([head_left, np.cross(head_left, head_dir), head_dir])

  cap_a = [pose[a] for _, a, _ in _CAPSULES] + [pose[8]]
  cap_b = [pose[b] for _, _, b in _CAPSULES] + [head_centre]
  cap_r = [radii[p] for p, _, _ in _CAPSULES] + [52.0 * look.head]
  tex_origin, tex_inv = [], []
  for (part, a, b), r in zip(_CAPSULES, cap_r):
    side_hint = left if part in (L_THIGH, L_SHIN, L_UPPER_ARM, L_FOREARM) else -left
    rows = _limb_axes(pose[a], pose[b], side_hint)
    length = max(np.linalg.norm(pose[b] - pose[a]), 1e-6)
    tex_origin.append(pose[a])
    tex_inv.append(rows / np.array([r, r, length])[:, None])
  neck_rows = _limb_axes(pose[8], head_centre, left)
  tex_origin.append(pose[8])
  tex_inv.append(neck_rows / np.array([cap_r[-1], cap_r[-1],
                                       max(np.linalg.norm(head_centre - pose[8]), 1e-6)])[:, None])

  hip_half = np.linalg.norm(pose[4] - pose[1]) / 2
  shoulder_half = np.linalg.norm(pose[11] - pose[14]) / 2
  torso = np.linalg.norm(pose[8] - pose[0])
  g = look.girth
  ellipsoids = [
      _ellipsoid(pose[0] + up * 25.0, frame, (hip_half + 75.0 * g, 105.0 * g, 115.0)),
      _ellipsoid(pose[0] + up * 0.45 * torso, frame,
                 (0.8 * shoulder_half + 45.0 * g, 100.0 * g, 0.3 * torso)),
      _ellipsoid(pose[8] - up * 0.28 * torso, frame,
                 (shoulder_half * 0.88 + 28.0 * g, 112.0 * g, 0.36 * torso)),
      _ellipsoid(head_centre, head_rows, (82.0 * look.head, 98.0 * look.head, head_up)),
  ]
  for wrist, elbow, side in ((13, 12, left), (16, 15, -left)):
    rows = _limb_axes(pose[elbow], pose[wrist], side)
    ellipsoids.append(_ellipsoid(pose[wrist] + rows[2] * 72.0, rows, (48.0, 26.0, 88.0)))
  forward_flat = _unit(forward - (forward @ world_up) * world_up)
  foot_left = np.cross(world_up, forward_flat)
  foot_rows = np.stack([foot_left, forward_flat, world_up])
  for ankle in (6, 3):
    centre = pose[ankle] + forward_flat * 55.0 - world_up * 30.0
    ellipsoids.append(_ellipsoid(centre, foot_rows, (47.0, 128.0, 42.0)))
  ell_centre = np.stack([c for c, _ in ellipsoids])
  ell_inv = np.stack([m for _, m in ellipsoids])
  return Volumes(
      cap_a=np.asarray(cap_a, np.float32), cap_b=np.asarray(cap_b, np.float32),
      cap_r=np.asarray(cap_r, np.float32), ell_centre=ell_centre.astype(np.float32),
      ell_inv=ell_inv.astype(np.float32),
      tex_origin=np.concatenate([np.asarray(tex_origin), ell_centre]).astype(np.float32),
      tex_inv=np.concatenate([np.asarray(tex_inv), ell_inv]).astype(np.float32),
      part=np.concatenate([CAPSULE_PARTS, ELLIPSOID_PARTS]))


def stack_volumes(volumes: list[Volumes]) -> Volumes:
  """Stacks per-frame Volumes along a new leading axis."""
  return Volumes(*(np.stack(field) for field in zip(*volumes)))
