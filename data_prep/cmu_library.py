r"""One-off conversion of CMU BVH clips into the package's motion library.

    python -m data_prep.cmu_library --extra=/work/shared/data/cmu_mocap_extra \
        --out=geopose_jax/assets/cmu_library

Reads the bundled ten clips (geopose_jax/assets/cmu_mocap/) and the clips listed in the
extra folder's index.csv, and writes geopose_jax/data/motion_library.py's format: one
compressed npz per CMU subject plus library.json. The package never runs this.

Per clip: the skeleton variant is recognised from the joint names (cgspeed MotionBuilder,
its 2008 names, renamed here, or the Daz release); the T-pose frame 0 is dropped where
index.csv says there is one; the clip is resampled from its true frame rate (index.csv's
`fps`, not the header: salsa is 60 fps) to 50 fps by per-joint slerp; offsets and root
translation are turned into millimetres (per-variant unit); joints the Human3.6M-17 mapping
does not need (fingers, thumbs, eyes) are pruned; rotations are stored as float16
quaternions. A clip that fails a check is left out, with the reason, in library.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys

import numpy as np
from scipy.spatial.transform import Rotation

from geopose_jax.data import bvh as bvh_lib
from geopose_jax.data import motion
from geopose_jax.data import motion_library
from geopose_jax.data import vocab
from geopose_jax.errors import InputError

LIBRARY_FPS = 50.0
MIN_FRAMES = 25  # half a second at 50 fps

# index.csv category -> readable action (vocab.LIBRARY_ACTIONS); None: not a motion.
CATEGORY_ACTIONS = {
    "walk: plain, slow, brisk, uneven ground, figure-8": "walking",
    "walk: styled / emotional": "styled walking",
    "walk with turns / veering": "turning",
    "run / jog (incl. turns, stops)": "running",
    "jump / hop / jump-turn": "jumping",
    "dance: salsa (couple dance)": "dancing",
    "dance: other": "dancing",
    "sports": "sports",
    "exercise / stretch": "exercise",
    "reach up / tiptoe / climb": "reaching",
    "everyday: bend, pick up, wash": "bending",
    "posing / calibration pose": None,
}

# The ten clips bundled as BVH since the first release (cgspeed-MB, T-pose, 120 fps).
BUNDLED = {
    "02_01": ("walk", "walk: plain, slow, brisk, uneven ground, figure-8"),
    "02_02": ("walk", "walk: plain, slow, brisk, uneven ground, figure-8"),
    "02_03": ("run/jog", "run / jog (incl. turns, stops)"),
    "02_05": ("punch/strike", "sports"),
    "02_07": ("swordplay", "sports"),
    "07_01": ("walk", "walk: plain, slow, brisk, uneven ground, figure-8"),
    "08_01": ("walk", "walk: plain, slow, brisk, uneven ground, figure-8"),
    "09_01": ("run", "run / jog (incl. turns, stops)"),
    "16_01": ("jump", "jump / hop / jump-turn"),
    "35_01": ("walk", "walk: plain, slow, brisk, uneven ground, figure-8"),
}

# cgspeed's 2008 MotionBuilder names -> the later ones (same tree, same order).
NAMES_2008 = {
    "LeftHip": "LeftUpLeg", "LeftKnee": "LeftLeg", "LeftAnkle": "LeftFoot",
    "LeftToe": "LeftToeBase", "RightHip": "RightUpLeg", "RightKnee": "RightLeg",
    "RightAnkle": "RightFoot", "RightToe": "RightToeBase", "lowerback": "LowerBack",
    "Chest": "Spine", "Chest2": "Spine1", "lowerneck": "Neck", "Neck": "Neck1",
    "LeftCollar": "LeftShoulder", "LeftShoulder": "LeftArm", "LeftElbow": "LeftForeArm",
    "LeftWrist": "LeftHand", "lhand": "LeftFingerBase", "LFingers": "LeftHandIndex1",
    "RightCollar": "RightShoulder", "RightShoulder": "RightArm", "RightElbow": "RightForeArm",
    "RightWrist": "RightHand", "rhand": "RightFingerBase", "RFingers": "RightHandIndex1",
}
# Joints kept per variant (their ancestors are kept too): the Human3.6M-17 sources and the
# toe tips, which set the floor.
KEEP = {
    "cgspeed-MB": {n for group in motion.H36M_FROM_CMU for n in group}
    | {"LeftToeBase_end", "RightToeBase_end"},
    "cgspeed-Daz": {n for group in motion.H36M_FROM_DAZ for n in group}
    | {"lFoot_end", "rFoot_end"},
}
MM_PER_UNIT = {"cgspeed-MB": motion.CMU_UNIT_MM, "cgspeed-Daz": 10.0}
# The salsa files were multiplied by this by the repository they come from.
SALSA_RESCALE = 0.00782
# The Daz head has eyes but no end site; its top is put this far above the head joint
# (as far as in the MotionBuilder skeleton), mm in the head's rest frame.
DAZ_HEAD_TOP_MM = 100.0  # like the MotionBuilder skeleton's Head_end (~95 mm)
MAX_ROOT_SPEED_MM_S = 12000.0
MAX_LEADING_FRAMES = 12  # 0.1 s at 120 fps


def skeleton_of(names: tuple[str, ...]) -> str:
  """'cgspeed-MB', 'cgspeed-MB-2008names' or 'cgspeed-Daz'; InputError otherwise."""
  if {"LeftUpLeg", "LowerBack", "Head_end"} <= set(names):
    return "cgspeed-MB"
  if {"LeftHip", "lowerback", "Chest2"} <= set(names):
    return "cgspeed-MB-2008names"
  if {"hip", "abdomen", "rThigh", "lShin"} <= set(names):
    return "cgspeed-Daz"
  raise InputError(f"not a cgspeed CMU skeleton (joints {', '.join(names[:8])}, ...)")


def _prune(names, parents, keep) -> np.ndarray:
  """Indices of the joints in `keep` and all their ancestors, in file order."""
  index = {n: i for i, n in enumerate(names)}
  chosen = set()
  for name in keep:
    j = index[name]
    while j >= 0 and j not in chosen:
      chosen.add(j)
      j = parents[j]
  return np.asarray(sorted(chosen))


def convert_clip(motion_bvh: bvh_lib.BvhMotion, *, fps: float, tpose_frame0: bool,
                 salsa_rescaled: bool) -> dict[str, np.ndarray]:
  """One parsed clip -> the library's per-clip arrays (module doc).

  Args:
    motion_bvh: the parsed BVH.
    fps: the clip's true frame rate (index.csv), whatever the header says.
    tpose_frame0: drop frame 0 (cgspeed's T-pose).
    salsa_rescaled: the file's units were multiplied by SALSA_RESCALE.

  Raises:
    InputError: an unknown skeleton, too few frames, implausible proportions.
  """
  skeleton = skeleton_of(motion_bvh.names)
  names = list(motion_bvh.names)
  if skeleton == "cgspeed-MB-2008names":
    names = [NAMES_2008.get(n, n) for n in names]
    names = [NAMES_2008[n[:-4]] + "_end" if n.endswith("_end") and n[:-4] in NAMES_2008
             else n for n in names]
    skeleton = "cgspeed-MB"
  rotations, root = bvh_lib.local_transforms(motion_bvh)
  offsets = motion_bvh.offsets.copy()
  parents = motion_bvh.parents.copy()
  if tpose_frame0:
    rotations, root = rotations[1:], root[1:]
  unit = MM_PER_UNIT[skeleton] / (SALSA_RESCALE if salsa_rescaled else 1.0)
  before = len(root)
  rotations, root = _drop_leading_jumps(rotations, root * unit, fps)
  dropped = before - len(root) + int(tpose_frame0)
  root = root / unit
  if skeleton == "cgspeed-Daz":
    head = names.index("head")
    names.append("head_end")
    parents = np.append(parents, head)
    offsets = np.concatenate([offsets, [[0.0, DAZ_HEAD_TOP_MM / unit, 0.0]]])
    rotations = np.concatenate([rotations, np.broadcast_to(np.eye(3), rotations[:, :1].shape)],
                               axis=1)
  keep = _prune(names, parents, KEEP[skeleton])
  remap = -np.ones(len(names), int)
  remap[keep] = np.arange(len(keep))
  if len(rotations) < 2:
    raise InputError(f"{len(rotations)} motion frames; need at least 2")
  resampled, times, lo = motion.resample_rotations(rotations[:, keep], fps, LIBRARY_FPS)
  w = (times - lo)[:, None]
  root = ((1 - w) * root[lo] + w * root[lo + 1]) * unit
  if len(resampled) < MIN_FRAMES:
    raise InputError(f"{len(resampled)} frames at {LIBRARY_FPS:g} fps; need at least "
                     f"{MIN_FRAMES}")
  out = {
      "joints": np.asarray([names[j] for j in keep]),
      "parents": np.asarray([remap[parents[j]] if parents[j] >= 0 else -1 for j in keep],
                            np.int16),
      "offsets": (offsets[keep] * unit).astype(np.float32),
      "rotations": Rotation.from_matrix(resampled.reshape(-1, 3, 3)).as_quat()
                   .reshape(resampled.shape[:2] + (4,)).astype(np.float16),
      "root": root.astype(np.float32),
  }
  _check_proportions(out, skeleton)
  out["dropped_frames"] = np.asarray(dropped)  # not stored with the motion
  return out


def _drop_leading_jumps(rotations: np.ndarray, root_mm: np.ndarray, fps: float):
  """Drops leading frames that the root leaves faster than a person moves (a second T-pose
  frame in some files); InputError for such a jump later in the clip."""
  speed = np.linalg.norm(np.diff(root_mm, axis=0), axis=-1) * fps  # mm/s
  jumps = np.flatnonzero(speed > MAX_ROOT_SPEED_MM_S)
  if len(jumps) and jumps.max() >= MAX_LEADING_FRAMES:
    k = int(jumps[jumps >= MAX_LEADING_FRAMES][0])
    raise InputError(f"the root jumps {speed[k] / fps:.0f} mm between motion frames {k} and "
                     f"{k + 1}; the motion is discontinuous")
  first = int(jumps.max()) + 1 if len(jumps) else 0
  return rotations[first:], root_mm[first:]


def _check_proportions(clip: dict[str, np.ndarray], skeleton: str) -> None:
  names = list(clip["joints"])
  length = lambda n: float(np.linalg.norm(clip["offsets"][names.index(n)]))  # noqa: E731
  if skeleton == "cgspeed-MB":
    thigh, shin, arm = length("LeftLeg"), length("LeftFoot"), length("LeftForeArm")
  else:
    thigh, shin, arm = length("lShin"), length("lFoot"), length("lForeArm")
  if not (0.5 < thigh / shin < 2 and 0.3 < arm / thigh < 1.5 and 250 < thigh < 650):
    raise InputError(f"implausible proportions: thigh {thigh:.0f} mm, shin {shin:.0f} mm, "
                     f"upper arm {arm:.0f} mm")


def _rows(extra: pathlib.Path, bundled: pathlib.Path) -> list[dict]:
  rows = []
  for clip, (description, category) in BUNDLED.items():
    rows.append({"clip": clip, "path": bundled / f"{clip}.bvh", "description": description,
                 "category": category, "fps": 120.0, "tpose": True, "salsa": False,
                 "skeleton": "cgspeed-MB"})
  with open(extra / "index.csv", newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
      rows.append({"clip": row["file"].split(".")[0], "path": extra / row["file"],
                   "description": row["description"], "category": row["category"],
                   "fps": float(row["fps"]), "tpose": row["tpose_frame0"] == "yes",
                   "salsa": "x0.00782" in row["units"], "skeleton": row["skeleton"]})
  return rows


def build_library(extra: pathlib.Path, out: pathlib.Path,
                  bundled: pathlib.Path | None = None) -> dict:
  """Converts every clip; writes `out`/cmu_<subject>.npz and library.json atomically."""
  bundled = bundled or pathlib.Path(motion.default_bvh_dir())
  per_subject: dict[str, dict[str, np.ndarray]] = {}
  manifest = {"fps": LIBRARY_FPS, "clips": [], "rejected": []}
  for row in _rows(extra, bundled):
    clip = row["clip"]
    action = CATEGORY_ACTIONS.get(row["category"], "?")
    if action is None:
      manifest["rejected"].append({"clip": clip, "reason": f"category {row['category']!r} "
                                   "is a calibration pose, not a motion"})
      continue
    try:
      if action == "?":
        raise InputError(f"unknown category {row['category']!r}")
      parsed = bvh_lib.read_bvh(row["path"])
      if skeleton_of(parsed.names) != row["skeleton"]:
        raise InputError(f"index.csv says {row['skeleton']}, the joints say "
                         f"{skeleton_of(parsed.names)}")
      arrays = convert_clip(parsed, fps=row["fps"], tpose_frame0=row["tpose"],
                            salsa_rescaled=row["salsa"])
    except (InputError, FileNotFoundError) as error:
      manifest["rejected"].append({"clip": clip, "reason": str(error)})
      print(f"rejected {clip}: {error}", file=sys.stderr)
      continue
    dropped = int(arrays.pop("dropped_frames"))
    subject = clip.split("_")[0]
    name = f"cmu_{subject}.npz"
    per_subject.setdefault(name, {}).update({f"{clip}/{k}": v for k, v in arrays.items()})
    manifest["clips"].append({
        "clip": clip, "cmu_subject": subject, "action": action, "category": row["category"],
        "description": row["description"],
        "skeleton": "cgspeed-Daz" if row["skeleton"] == "cgspeed-Daz" else "cgspeed-MB",
        "num_frames": int(len(arrays["root"])), "file": name,
        "source_frames": int(parsed.num_frames), "source_fps": float(row["fps"]),
        "header_fps": round(parsed.fps, 3), "dropped_frames": dropped})
  assert all(c["action"] in vocab.LIBRARY_ACTIONS for c in manifest["clips"])
  out.mkdir(parents=True, exist_ok=True)
  for name, arrays in per_subject.items():
    temporary = out / f"{name}.tmp.npz"
    np.savez_compressed(temporary, **arrays)
    os.replace(temporary, out / name)
  temporary = out / f"{motion_library.MANIFEST}.tmp"
  temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
  os.replace(temporary, out / motion_library.MANIFEST)
  return manifest


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  parser.add_argument("--extra", required=True, type=pathlib.Path)
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path(motion_library.default_library_dir()))
  args = parser.parse_args(argv)
  manifest = build_library(args.extra, args.out)
  print(f"{len(manifest['clips'])} clips, {len(manifest['rejected'])} rejected, "
        f"{sum(c['num_frames'] for c in manifest['clips'])} frames at {LIBRARY_FPS:g} fps")


if __name__ == "__main__":
  main()
