"""The multi-view record: TFDS features, PNG encoding, and decoding to the numpy layout.

Decoded layout (one record per subject, sequence, frame; 4 cameras in
geometry.cameras.H36M_CAMERA_IDS order):
  images (4, 128, 128, 3) uint8, backgrounds (4, 128, 128, 3) uint8,
  masks (4, 128, 128) uint8 in {0, 1}, R (4, 3, 3) f32 world->camera,
  t (4, 3) f32 camera centres (mm), K (4, 3, 3) f32 crop intrinsics (crop pixels),
  pose_3d_world (17, 3) f32 mm, pose_3d_cam (4, 17, 3) f32 mm,
  pose_2d_px (4, 17, 2) f32 distorted full-image pixels, pose_2d_crop (4, 17, 2) f32,
  subject str, action str, sequence str, frame int.
`tfds.data_source` returns the images as lists of arrays and the names as bytes;
`decode_record` turns such an element into the layout above.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

NUM_VIEWS = 4
CROP_SIZE = 128
NUM_JOINTS = 17


def multiview_features(size: int = CROP_SIZE) -> tfds.features.FeaturesDict:
  """TFDS features of a multi-view record (images as PNG, masks zlib-compressed)."""
  image = tfds.features.Image(shape=(size, size, 3), encoding_format="png")
  f32 = lambda *shape: tfds.features.Tensor(shape=shape, dtype=np.float32)  # noqa: E731
  return tfds.features.FeaturesDict({
      "images": tfds.features.Sequence(image, length=NUM_VIEWS),
      "backgrounds": tfds.features.Sequence(image, length=NUM_VIEWS),
      "masks": tfds.features.Tensor(shape=(NUM_VIEWS, size, size), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.ZLIB),
      "R": f32(NUM_VIEWS, 3, 3),
      "t": f32(NUM_VIEWS, 3),
      "K": f32(NUM_VIEWS, 3, 3),
      "pose_3d_world": f32(NUM_JOINTS, 3),
      "pose_3d_cam": f32(NUM_VIEWS, NUM_JOINTS, 3),
      "pose_2d_px": f32(NUM_VIEWS, NUM_JOINTS, 2),
      "pose_2d_crop": f32(NUM_VIEWS, NUM_JOINTS, 2),
      "subject": tfds.features.Text(),
      "action": tfds.features.Text(),
      "sequence": tfds.features.Text(),
      "frame": tfds.features.Scalar(dtype=np.int32),
  })


def png_bytes(image: np.ndarray) -> bytes:
  """(H, W[, C]) uint8 -> PNG bytes (Pillow)."""
  buffer = io.BytesIO()
  PIL.Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", compress_level=6)
  return buffer.getvalue()


def encode_record(record: Mapping[str, Any]) -> dict[str, Any]:
  """A record in the decoded layout -> values the TFDS features accept (PNG bytes)."""
  out = dict(record)
  for key in ("images", "backgrounds"):
    out[key] = [png_bytes(view) for view in record[key]]
  out["masks"] = np.asarray(record["masks"], np.uint8)
  return out


def decode_record(element: Mapping[str, Any]) -> dict[str, Any]:
  """An element of `tfds.data_source(...)` -> the decoded multi-view layout (numpy, str)."""
  out = {}
  for key, value in element.items():
    if isinstance(value, bytes):
      out[key] = value.decode("utf-8")
    elif isinstance(value, (list, tuple)):
      out[key] = np.stack(value)
    elif key == "frame":
      out[key] = int(value)
    else:
      out[key] = value
  return out
