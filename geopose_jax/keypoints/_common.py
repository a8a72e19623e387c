"""Small helpers shared by the readers: JSON loading and frame numbers from names."""

from __future__ import annotations

import json
import os
import re

from geopose_jax.errors import InputError

_DIGITS = re.compile(r"(\d+)")


def load_json(path: str):
  """The parsed JSON of `path`, or InputError naming the file and the parse error."""
  try:
    with open(path, "r", encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    raise InputError(f"{path}: not valid JSON ({error}); expected a keypoint file") from None
  except UnicodeDecodeError:
    raise InputError(f"{path}: not a UTF-8 text file; expected a JSON keypoint file") from None


def frame_number(image_id, origin: str, field: str = "image_id") -> int:
  """An integer frame number from an id: 12, "12", "frame_000012.jpg" -> 12 (last digits)."""
  if isinstance(image_id, bool):
    raise InputError(f"{origin}: {field} {image_id!r} is not a frame number or image name")
  if isinstance(image_id, int):
    return image_id
  if isinstance(image_id, float) and image_id.is_integer():
    return int(image_id)
  if isinstance(image_id, str):
    digits = _DIGITS.findall(os.path.splitext(os.path.basename(image_id))[0])
    if digits:
      return int(digits[-1])
  raise InputError(f"{origin}: {field} {image_id!r} holds no frame number; expected an "
                   f"integer or an image name with digits such as 'frame_000012.jpg'")
