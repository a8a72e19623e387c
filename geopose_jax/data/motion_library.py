"""The packaged CMU motion library: 249 real clips as joint rotations at 50 fps.

geopose_jax/assets/cmu_library/ holds one compressed `.npz` per CMU subject and
`library.json` (what every clip is, and which clips were left out and why). It is written
once by data_prep/cmu_library.py from the CMU BVH files; the package only reads it.

Per clip (keys `<clip>/<field>` in its subject's file, no pickles):
  joints (J,) str     joint names (the clip's own skeleton; end sites `<parent>_end`)
  parents (J,) int16  parent index, -1 for the root, parents before children
  offsets (J, 3) f32  rest offsets from the parent, millimetres, BVH axes (Y up)
  rotations (F, J, 4) f16  local rotations as unit quaternions (x, y, z, w)
  root (F, 3) f32     root translation, millimetres, BVH axes
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import os

import numpy as np
from scipy.spatial.transform import Rotation

from geopose_jax.errors import DatasetError

MANIFEST = "library.json"
FIELDS = ("joints", "parents", "offsets", "rotations", "root")


@dataclasses.dataclass(frozen=True)
class ClipInfo:
  """One clip of the library (a row of library.json).

  Attributes:
    clip: CMU subject_trial, e.g. '16_11'.
    cmu_subject: the CMU subject number as text ('16').
    action: readable category (vocab.LIBRARY_ACTIONS).
    category: index.csv's category text.
    description: CMU's own text for the trial.
    skeleton: 'cgspeed-MB' (also the renamed 2008 release) or 'cgspeed-Daz'.
    num_frames: frames at the library's 50 fps.
    file: the npz file holding it.
    source_frames: frames of the BVH file; source_fps: its true rate (CMU's; the salsa
      clips are 60 fps though their headers say 120); header_fps: what its header says;
    dropped_frames: leading frames dropped (the T-pose, and any frame the root leaves
      faster than a person moves).
  """
  clip: str
  cmu_subject: str
  action: str
  category: str
  description: str
  skeleton: str
  num_frames: int
  file: str
  source_frames: int = 0
  source_fps: float = 0.0
  header_fps: float = 0.0
  dropped_frames: int = 0


@dataclasses.dataclass(frozen=True)
class LibraryClip:
  """A clip's skeleton and motion (see the module doc for the fields)."""
  info: ClipInfo
  joints: tuple[str, ...]
  parents: np.ndarray
  offsets: np.ndarray
  rotations: np.ndarray   # (F, J, 3, 3) float64, from the stored quaternions
  root: np.ndarray        # (F, 3) float64 mm
  fps: float


def default_library_dir() -> str:
  return str(importlib.resources.files("geopose_jax") / "assets" / "cmu_library")


@functools.lru_cache(maxsize=4)
def _manifest(library_dir: str) -> dict:
  path = os.path.join(library_dir, MANIFEST)
  if not os.path.isfile(path):
    raise DatasetError(f"{path}: the motion library's index is missing; reinstall the "
                       "package (or rerun data_prep/cmu_library.py)")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def clips(library_dir: str | None = None) -> tuple[ClipInfo, ...]:
  """Every clip of the library, sorted by clip id."""
  manifest = _manifest(library_dir or default_library_dir())
  return tuple(sorted((ClipInfo(**row) for row in manifest["clips"]), key=lambda c: c.clip))


def rejected(library_dir: str | None = None) -> tuple[dict, ...]:
  """Clips left out at conversion, each {'clip': ..., 'reason': ...}."""
  return tuple(_manifest(library_dir or default_library_dir())["rejected"])


def library_fps(library_dir: str | None = None) -> float:
  return float(_manifest(library_dir or default_library_dir())["fps"])


@functools.lru_cache(maxsize=32)
def _archive(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise DatasetError(f"{path}: a motion library file is missing; reinstall the package")
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def quaternions_to_matrices(quaternions: np.ndarray) -> np.ndarray:
  """(..., 4) (x, y, z, w), not necessarily unit -> (..., 3, 3) rotations."""
  q = np.asarray(quaternions, np.float64)
  flat = Rotation.from_quat(q.reshape(-1, 4)).as_matrix()  # normalises each quaternion
  return flat.reshape(q.shape[:-1] + (3, 3))


def root_path(clip: str, library_dir: str | None = None) -> np.ndarray:
  """(F, 3) float32 root translation of a clip, mm, BVH axes (cheap: no rotations)."""
  library_dir = library_dir or default_library_dir()
  info = {c.clip: c for c in clips(library_dir)}.get(clip)
  if info is None:
    raise DatasetError(f"clip {clip!r} is not in the motion library {library_dir}")
  return _archive(os.path.join(library_dir, info.file))[f"{clip}/root"]


def load_clip(clip: str, library_dir: str | None = None) -> LibraryClip:
  """The skeleton and motion of one clip; DatasetError for an unknown clip or file."""
  library_dir = library_dir or default_library_dir()
  info = {c.clip: c for c in clips(library_dir)}.get(clip)
  if info is None:
    raise DatasetError(f"clip {clip!r} is not in the motion library {library_dir}")
  data = _archive(os.path.join(library_dir, info.file))
  missing = [f for f in FIELDS if f"{clip}/{f}" not in data]
  if missing:
    raise DatasetError(f"{os.path.join(library_dir, info.file)}: clip {clip} lacks {missing}")
  rotations = quaternions_to_matrices(data[f"{clip}/rotations"])
  return LibraryClip(info=info, joints=tuple(str(j) for j in data[f"{clip}/joints"]),
                     parents=data[f"{clip}/parents"].astype(np.int32),
                     offsets=data[f"{clip}/offsets"].astype(np.float64),
                     rotations=rotations, root=data[f"{clip}/root"].astype(np.float64),
                     fps=library_fps(library_dir))
