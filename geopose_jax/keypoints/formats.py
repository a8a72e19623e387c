"""Recognising which keypoint format a path holds."""

from __future__ import annotations

import os
import zipfile

from geopose_jax.errors import InputError

FORMATS = ("videopose3d", "coco", "halpe", "openpose", "mediapipe", "array")
_PEEK_BYTES = 1 << 16


def _peek_json(path: str) -> str:
  """The format of a JSON file, judged from its start (no full parse of a big file)."""
  with open(path, "rb") as f:
    head = f.read(_PEEK_BYTES).decode("utf-8", errors="replace").lstrip()
  if head.startswith("["):
    if '"keypoints"' in head:
      return "coco"
  elif head.startswith("{"):
    if '"people"' in head:
      return "openpose"
    if '"annotations"' in head or '"images"' in head:
      return "coco"
    if '"frames"' in head and ('"landmarks"' in head or '"people"' in head):
      return "mediapipe"
    if '"keypoints"' in head:
      return "array"
  raise InputError(f"{path}: unknown keypoint format (a JSON file that is none of: COCO/"
                   f"AlphaPose results list, COCO dataset dict, OpenPose frame, MediaPipe "
                   f"frames, plain 'keypoints' arrays); pass --config.predict.format="
                   f"<one of {', '.join(FORMATS)}>")


def detect_format(path: str) -> str:
  """One of FORMATS for `path`, or InputError naming the file and the accepted forms."""
  if not os.path.exists(path):
    raise InputError(f"keypoint input not found: {path}")
  if os.path.isdir(path):
    if any(n.endswith(".json") for n in os.listdir(path)):
      return "openpose"
    raise InputError(f"{path}: a folder without *.json files; expected an OpenPose JSON "
                     f"folder (a folder of images is an image input, not keypoints)")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    try:
      with zipfile.ZipFile(path) as z:
        names = {os.path.splitext(n)[0] for n in z.namelist()}
    except zipfile.BadZipFile:
      raise InputError(f"{path}: not a valid .npz (zip) file") from None
    return "videopose3d" if {"positions_2d", "metadata"} <= names else "array"
  if ext == ".npy":
    return "array"
  if ext == ".csv":
    return "mediapipe"
  if ext == ".json":
    return _peek_json(path)
  raise InputError(f"{path}: unknown keypoint format {ext or '(no extension)'}; expected "
                   f".npz, .npy, .json, .csv or an OpenPose folder, or pass "
                   f"--config.predict.format=<one of {', '.join(FORMATS)}>")


def check_format(name: str) -> str:
  key = str(name).strip().lower()
  if key not in FORMATS:
    raise InputError(f"unknown keypoint format {name!r}; expected one of {FORMATS}")
  return key


