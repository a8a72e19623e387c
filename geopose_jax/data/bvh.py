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
import gzip
import os

import numpy as np

from geopose_jax.errors import InputError

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


def _fail(path: str, line: int | None, message: str) -> InputError:
  where = path or "<text>"
  if line is not None:
    where += f", line {line}"
  return InputError(f"malformed BVH file {where}: {message}")


def _number(token: str, line: int, path: str, what: str, kind=float):
  try:
    return kind(token)
  except ValueError:
    raise _fail(path, line, f"{what} must be {'an integer' if kind is int else 'a number'}, "
                f"found {token!r}") from None


def _hierarchy_tokens(lines: list[str], path: str):
  """(token, line number) pairs of the hierarchy and the MOTION header, and the first line
  of the frame table (0-based)."""
  tokens = []
  for number, line in enumerate(lines):
    words = line.split()
    tokens.extend((w, number + 1) for w in words)
    if words and words[0] == "Frame" and len(words) >= 2 and words[1] == "Time:":
      return tokens, number + 1
  raise _fail(path, None, "no 'Frame Time:' line; the file is truncated or not a BVH file")


def parse_bvh(text: str, path: str = "") -> BvhMotion:
  """Parses the text of a BVH file.

  Raises:
    InputError: naming the file and line of malformed input (bad numbers, a wrong number of
      values in a frame, NaN or infinite values, a bad frame time).
  """
  lines = text.splitlines()
  tokens, table_start = _hierarchy_tokens(lines, path)
  pos = 0

  def take() -> tuple[str, int]:
    nonlocal pos
    if pos >= len(tokens):
      raise _fail(path, tokens[-1][1] if tokens else None, "unexpected end of file")
    pos += 1
    return tokens[pos - 1]

  def expect(word: str) -> int:
    got, line = take()
    if got != word:
      raise _fail(path, line, f"expected {word!r}, found {got!r}")
    return line

  names: list[str] = []
  parents: list[int] = []
  offsets: list[list[float]] = []
  channels: list[tuple[str, ...]] = []

  expect("HIERARCHY")
  stack: list[int] = []
  keyword, line = take()
  if keyword != "ROOT":
    raise _fail(path, line, f"expected 'ROOT' after HIERARCHY, found {keyword!r}")
  pending = ("joint", take()[0])
  while True:
    kind, name = pending
    expect("{")
    expect("OFFSET")
    offset = []
    for _ in range(3):
      token, line = take()
      offset.append(_number(token, line, path, f"OFFSET of {name!r}"))
    if not np.all(np.isfinite(offset)):
      raise _fail(path, line, f"OFFSET of {name!r} is not finite: {offset}")
    names.append(name)
    parents.append(stack[-1] if stack else -1)
    offsets.append(offset)
    if kind == "joint":
      expect("CHANNELS")
      token, line = take()
      count = _number(token, line, path, f"CHANNELS count of {name!r}", int)
      if not 0 <= count <= 6:
        raise _fail(path, line, f"joint {name!r} has {count} channels; expected 0 to 6")
      names_here = []
      for _ in range(count):
        token, line = take()
        if token[:1].upper() not in _AXIS_INDEX or token[1:].lower() not in ("rotation",
                                                                             "position"):
          raise _fail(path, line, f"{token!r} is not a channel (joint {name!r} declares "
                      f"{count}; channels are X/Y/Z + position/rotation)")
        names_here.append(token)
      channels.append(tuple(names_here))
    else:
      channels.append(())
    stack.append(len(names) - 1)
    # Children and closing braces.
    while True:
      word, line = take()
      if word == "}":
        stack.pop()
        if not stack:
          break
        continue
      if word == "JOINT":
        pending = ("joint", take()[0])
        break
      if word == "End":
        expect("Site")
        pending = ("end", names[stack[-1]] + "_end")
        break
      raise _fail(path, line, f"unexpected token {word!r} in the hierarchy")
    if not stack:
      break

  expect("MOTION")
  expect("Frames:")
  token, line = take()
  num_frames = _number(token, line, path, "Frames:", int)
  if num_frames < 1:
    raise _fail(path, line, f"Frames: {num_frames}; a motion needs at least one frame")
  expect("Frame")
  expect("Time:")
  token, line = take()
  frame_time = _number(token, line, path, "Frame Time:")
  if not (np.isfinite(frame_time) and frame_time > 0):
    raise _fail(path, line, f"Frame Time: {token}; expected a positive number of seconds")
  num_channels = sum(len(c) for c in channels)
  motion = _frame_table(lines[table_start:], table_start, num_frames, num_channels, path)
  return BvhMotion(names=tuple(names), parents=np.asarray(parents, np.int32),
                   offsets=np.asarray(offsets, np.float64), channels=tuple(channels),
                   motion=motion, frame_time=frame_time, path=path)


def _frame_table(lines: list[str], first_line: int, num_frames: int, num_channels: int,
                 path: str) -> np.ndarray:
  """The (F, C) frame table; the errors name the first offending line."""
  rows = [(first_line + i + 1, line) for i, line in enumerate(lines) if line.strip()]
  if len(rows) != num_frames:
    where = rows[-1][0] if rows else first_line
    raise _fail(path, where, f"{len(rows)} frames of motion, but the header says "
                f"Frames: {num_frames}")
  try:
    motion = np.asarray(" ".join(line for _, line in rows).split(), np.float64)
  except ValueError:
    motion = None
  if motion is None or motion.size != num_frames * num_channels:
    for number, line in rows:  # slow path: find the line at fault
      words = line.split()
      if len(words) != num_channels:
        raise _fail(path, number, f"{len(words)} values in this frame; the hierarchy has "
                    f"{num_channels} channels")
      for word in words:
        _number(word, number, path, "a motion value")
  motion = motion.reshape(num_frames, num_channels)
  finite = np.isfinite(motion)
  if not finite.all():
    row, column = np.argwhere(~finite)[0]
    raise _fail(path, rows[row][0], f"motion value {motion[row, column]} in channel "
                f"{column}; NaN or infinite values make every joint below it undefined")
  return motion


def read_bvh(path: str | os.PathLike) -> BvhMotion:
  """Reads and parses a BVH file (`.bvh`, or gzipped `.bvh.gz`).

  Raises:
    FileNotFoundError: naming a missing file. InputError: malformed content (see parse_bvh).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"BVH file not found: {path}")
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rt", encoding="ascii", errors="replace") as f:
      text = f.read()
  except (OSError, EOFError) as error:
    raise InputError(f"cannot read BVH file {path}: {error}") from None
  return parse_bvh(text, path)


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
        raise _fail(bvh.path, None, f"unknown channel {name!r} of joint {bvh.names[j]!r}")
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
