"""Biovision Hierarchy (BVH) motion files: parsing and forward kinematics (numpy only).

A BVH file holds a joint hierarchy (names, offsets from the parent in the parent's rest
frame, the order of each joint's channels) and a frame table with one row of channel
values per frame. Rotation channels are Euler angles in degrees applied in the listed
order as intrinsic rotations, so a joint with channels `Zrotation Yrotation Xrotation`
has local rotation Rz @ Ry @ Rx, and its global rotation is parent_global @ local.

End sites (leaf offsets without channels) become joints named `<parent>_end` so that,
for example, the top of the head can be read as the end site of `Head`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

_AXIS_INDEX = {"X": 0, "Y": 1, "Z": 2}


@dataclasses.dataclass(frozen=True)
class BvhMotion:
  """A parsed BVH file.

  Attributes:
    names: (J,) joint names in file order; end sites are named `<parent>_end`.
    parents: (J,) parent index of each joint, -1 for the root; parents precede children.
    offsets: (J, 3) offset of each joint from its parent, in file units.
    channels: per joint, the tuple of channel names (e.g. ('Zrotation', ...)); () for
      end sites.
    motion: (F, C) channel values per frame, columns in the order the joints list them.
    frame_time: seconds between frames.
    path: the file it came from ('' when parsed from text).
  """
  names: tuple[str, ...]
  parents: np.ndarray
  offsets: np.ndarray
  channels: tuple[tuple[str, ...], ...]
  motion: np.ndarray
  frame_time: float
  path: str = ""

  @property
  def num_frames(self) -> int:
    return self.motion.shape[0]

  @property
  def fps(self) -> float:
    return 1.0 / self.frame_time

  def index(self, name: str) -> int:
    """The index of joint `name`; a KeyError lists what the file has."""
    if name not in self.names:
      raise KeyError(f"joint {name!r} not in {self.path or 'the BVH hierarchy'}; "
                     f"joints: {', '.join(self.names)}")
    return self.names.index(name)


def _fail(path: str, message: str) -> ValueError:
  return ValueError(f"malformed BVH file {path or '<text>'}: {message}")


def parse_bvh(text: str, path: str = "") -> BvhMotion:
  """Parses the text of a BVH file. Raises ValueError naming the file on malformed input."""
  tokens = text.split()
  pos = 0

  def take() -> str:
    nonlocal pos
    if pos >= len(tokens):
      raise _fail(path, "unexpected end of file")
    pos += 1
    return tokens[pos - 1]

  def expect(word: str) -> None:
    got = take()
    if got != word:
      raise _fail(path, f"expected {word!r}, found {got!r} (token {pos})")

  names: list[str] = []
  parents: list[int] = []
  offsets: list[list[float]] = []
  channels: list[tuple[str, ...]] = []

  expect("HIERARCHY")
  stack: list[int] = []
  keyword = take()
  if keyword != "ROOT":
    raise _fail(path, f"expected 'ROOT' after HIERARCHY, found {keyword!r}")
  pending = ("joint", take())
  while True:
    kind, name = pending
    expect("{")
    expect("OFFSET")
    try:
      offset = [float(take()) for _ in range(3)]
    except ValueError as e:
      raise _fail(path, f"bad OFFSET of {name!r}: {e}") from None
    names.append(name)
    parents.append(stack[-1] if stack else -1)
    offsets.append(offset)
    if kind == "joint":
      expect("CHANNELS")
      count = int(take())
      channels.append(tuple(take() for _ in range(count)))
    else:
      channels.append(())
    stack.append(len(names) - 1)
    # Children and closing braces.
    while True:
      word = take()
      if word == "}":
        stack.pop()
        if not stack:
          break
        continue
      if word == "JOINT":
        pending = ("joint", take())
        break
      if word == "End":
        expect("Site")
        pending = ("end", names[stack[-1]] + "_end")
        break
      raise _fail(path, f"unexpected token {word!r} in the hierarchy (token {pos})")
    if not stack:
      break

  expect("MOTION")
  expect("Frames:")
  num_frames = int(take())
  expect("Frame")
  expect("Time:")
  frame_time = float(take())
  num_channels = sum(len(c) for c in channels)
  values = tokens[pos:]
  if len(values) != num_frames * num_channels:
    raise _fail(path, f"{len(values)} motion values, expected {num_frames} frames x "
                f"{num_channels} channels = {num_frames * num_channels}")
  motion = np.asarray(values, dtype=np.float64).reshape(num_frames, num_channels)
  return BvhMotion(names=tuple(names), parents=np.asarray(parents, np.int32),
                   offsets=np.asarray(offsets, np.float64), channels=tuple(channels),
                   motion=motion, frame_time=frame_time, path=path)


def read_bvh(path: str | os.PathLike) -> BvhMotion:
  """Reads and parses a BVH file; FileNotFoundError names a missing file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"BVH file not found: {path}")
  with open(path, "r", encoding="ascii", errors="replace") as f:
    return parse_bvh(f.read(), path)


def _axis_rotations(angles_deg: np.ndarray, axis: str) -> np.ndarray:
  """(...,) degrees about `axis` -> (..., 3, 3) rotation matrices."""
  a = np.deg2rad(angles_deg)
  c, s = np.cos(a), np.sin(a)
  one, zero = np.ones_like(a), np.zeros_like(a)
  if axis == "X":
    rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
  elif axis == "Y":
    rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
  else:
    rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
  return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def local_transforms(bvh: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Per-frame local rotations and root translation from the channel table.

  Returns:
    rotations: (F, J, 3, 3) local rotation of every joint (identity for end sites).
    root_position: (F, 3) root translation channels (zero if the root has none).
  """
  num_frames, num_joints = bvh.num_frames, len(bvh.names)
  rotations = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
  root_position = np.zeros((num_frames, 3))
  column = 0
  for j, chans in enumerate(bvh.channels):
    for name in chans:
      values = bvh.motion[:, column]
      column += 1
      axis, kind = name[0].upper(), name[1:].lower()
      if axis not in _AXIS_INDEX or kind not in ("rotation", "position"):
        raise _fail(bvh.path, f"unknown channel {name!r} of joint {bvh.names[j]!r}")
      if kind == "rotation":
        # Intrinsic order: each listed rotation multiplies on the right.
        rotations[:, j] = rotations[:, j] @ _axis_rotations(values, axis)
      elif j == 0:
        root_position[:, _AXIS_INDEX[axis]] = values
  return rotations, root_position


def forward_kinematics(parents: np.ndarray, offsets: np.ndarray, rotations: np.ndarray,
                       root_position: np.ndarray) -> np.ndarray:
  """Global joint positions from local rotations.

  Args:
    parents: (J,) parent indices, parents before children, -1 for the root.
    offsets: (J, 3) or (F, J, 3) offsets from the parent in its rest frame.
    rotations: (F, J, 3, 3) local rotations.
    root_position: (F, 3) root translation (added to the root offset).

  Returns:
    (F, J, 3) global positions in the units of `offsets`.
  """
  num_frames, num_joints = rotations.shape[:2]
  offsets = np.broadcast_to(offsets, (num_frames, num_joints, 3))
  global_rot = np.empty_like(rotations)
  positions = np.empty((num_frames, num_joints, 3))
  for j in range(num_joints):
    p = parents[j]
    if p < 0:
      global_rot[:, j] = rotations[:, j]
      positions[:, j] = root_position + offsets[:, j]
    else:
      global_rot[:, j] = global_rot[:, p] @ rotations[:, j]
      positions[:, j] = positions[:, p] + np.einsum("fab,fb->fa", global_rot[:, p],
                                                    offsets[:, j])
  return positions


def joint_positions(bvh: BvhMotion) -> np.ndarray:
  """(F, J, 3) global positions of every joint (end sites included), file units."""
  rotations, root_position = local_transforms(bvh)
  return forward_kinematics(bvh.parents, bvh.offsets, rotations, root_position)
