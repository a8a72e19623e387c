"""Square crops around a person, their intrinsics, and cropping of full images.

Pixel convention (shared with the Human3.6M projections and matplotlib's imshow): integer
coordinates are pixel centres, so pixel (i, j) of an image covers [j - 0.5, j + 0.5] x
[i - 0.5, i + 0.5] in (u, v). A crop box (x0, y0, side) is the square u in [x0, x0 + side],
v in [y0, y0 + side] of full-image coordinates, resampled to size x size pixels:
u_crop = (u - x0) * size / side - 0.5, so the box centre lands on the crop centre
(size / 2 - 0.5).
"""

from __future__ import annotations

import numpy as np
import PIL.Image


def square_box(points_px: np.ndarray, centre_px: np.ndarray, pad_px: np.ndarray | float = 0.0,
               scale: float = 1.0) -> np.ndarray:
  """The square box centred on `centre_px` that holds every point, plus padding.

  Args:
    points_px: (..., J, 2) projected joints.
    centre_px: (..., 2) box centre (e.g. the projected root).
    pad_px: (...) or scalar margin added to the half side (e.g. a body radius in pixels).
    scale: factor on the half side after padding.

  Returns:
    (..., 3) boxes (x0, y0, side).
  """
  offsets = np.abs(np.asarray(points_px) - np.asarray(centre_px)[..., None, :])
  half = (offsets.max(axis=(-1, -2)) + pad_px) * scale
  centre = np.asarray(centre_px)
  return np.concatenate([centre - half[..., None], 2 * half[..., None]], axis=-1)


def crop_points(points_px: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
  """(..., J, 2) full-image pixels -> crop pixels of a (..., 3) box resampled to size^2."""
  box = np.asarray(box)
  scale = (size / box[..., 2])[..., None, None]
  return (np.asarray(points_px) - box[..., None, :2]) * scale - 0.5


def uncrop_points(points_crop: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
  """Inverse of `crop_points`."""
  box = np.asarray(box)
  scale = (box[..., 2] / size)[..., None, None]
  return (np.asarray(points_crop) + 0.5) * scale + box[..., None, :2]


def crop_intrinsics(f: np.ndarray, c: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
  """Pinhole intrinsics of a crop: K with K X landing on `crop_points` of f X/Z + c.

  Args:
    f: (..., 2) focal lengths of the full image.
    c: (..., 2) principal point of the full image.
    box: (..., 3) crop boxes.
    size: crop side in pixels.

  Returns:
    (..., 3, 3) float32 K.
  """
  box = np.asarray(box, np.float64)
  s = size / box[..., 2]
  fx, fy = np.asarray(f)[..., 0] * s, np.asarray(f)[..., 1] * s
  cx = (np.asarray(c)[..., 0] - box[..., 0]) * s - 0.5
  cy = (np.asarray(c)[..., 1] - box[..., 1]) * s - 0.5
  zero, one = np.zeros_like(fx), np.ones_like(fx)
  k = np.stack([np.stack([fx, zero, cx], -1), np.stack([zero, fy, cy], -1),
                np.stack([zero, zero, one], -1)], -2)
  return k.astype(np.float32)


def crop_image(image: np.ndarray, box: np.ndarray, size: int,
               resample: int = PIL.Image.BILINEAR) -> np.ndarray:
  """Resamples the square `box` (x0, y0, side) of an (H, W[, C]) uint8 image to size^2.

  Parts of the box outside the image are black. Use PIL.Image.NEAREST for masks.
  """
  x0, y0, side = (float(v) for v in box)
  pil = PIL.Image.fromarray(np.asarray(image))
  # PIL puts pixel centres at +0.5; our integer coordinates are centres.
  region = (x0 + 0.5, y0 + 0.5, x0 + side + 0.5, y0 + side + 0.5)
  out = pil.transform((size, size), PIL.Image.Transform.EXTENT, region, resample=resample)
  return np.asarray(out)
