"""Where each view's crop lies, its intrinsics, and resampling it out of a video frame.

Framing is the synthetic default's (data_prep.synthetic_multiview.records.crop_geometry):
a square box centred on the pinhole-projected root whose half side covers the projected
joints plus a body radius, `K` the pinhole intrinsics of the 128 x 128 crop
(data_prep.crops.crop_intrinsics), `pose_2d_crop` = K applied to the camera-frame pose and
`pose_2d_px` the distorted full-image projection, as the release's own D2_Positions.

The Human3.6M lenses distort by up to several crop pixels at the edge of the capture
area, so a plain crop of the frame would not match K. Each crop pixel is therefore
sampled where the real camera sees the ray K^-1 (u, v, 1): the crops are undistorted, and
K is exact for them as it is for the synthetic renderings.

Geometry lives in the calibrated image: the full-resolution pixel grid of the published
calibration (1000 x 1000 or 1000 x 1002). Frames of another size (a down-scaled copy of
the release, the tiny videos of the tests) are taken as the calibrated image scaled by
s = frame width / calibrated width in both directions (pixels stay square; the 1000 vs
1002 px heights differ by whole rows at the bottom, not by a scale). Records made from a
scaled copy have the same geometry (K, 2D) as from the original; only detail differs.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import scipy.ndimage

from data_prep.synthetic_multiview import features as multiview_record
from data_prep.synthetic_multiview import records as synthetic_records
from geopose_jax.geometry import cameras as cameras_lib

CROP_SIZE = multiview_record.CROP_SIZE
# A frame whose height differs from (calibrated height * s) by more than this fraction is
# not a scaled copy of the calibrated image.
_ASPECT_TOLERANCE = 0.01


def numpy_cameras(cameras: cameras_lib.Camera, dtype=np.float64) -> cameras_lib.Camera:
  """The camera stack with numpy fields of `dtype` (preparation stays on the host)."""
  return cameras_lib.Camera(**{k: np.asarray(getattr(cameras, k), dtype)
                               for k in ("R", "t", "f", "c", "k", "p", "res")})


def frame_geometry(pose_world: np.ndarray, cameras: cameras_lib.Camera) -> dict[str, np.ndarray]:
  """Camera-frame pose, 2D projections, crop boxes and crop intrinsics of one frame.

  Args:
    pose_world: (17, 3) world mm.
    cameras: Camera stacked (4,).

  Returns:
    pose_3d_cam (4, 17, 3) mm, pose_2d_px (4, 17, 2) distorted calibrated-image pixels,
    box (4, 3) (x0, y0, side) calibrated-image pixels, K (4, 3, 3), pose_2d_crop
    (4, 17, 2) crop pixels.
  """
  return synthetic_records.crop_geometry(np.asarray(pose_world, np.float64), cameras)


def frame_scale(width: int, height: int, calibrated_res: np.ndarray, what: str) -> float:
  """Scale from the calibrated image to a frame of (width, height) pixels.

  Raises:
    ValueError: naming `what` (the file) when the frame is not a scaled calibrated image.
  """
  res_w, res_h = (float(v) for v in calibrated_res)
  scale = width / res_w
  if abs(height - res_h * scale) > max(2.0 * scale, _ASPECT_TOLERANCE * height) + 1.0:
    raise ValueError(f"{what}: frames are {width}x{height} px, which is not the calibrated "
                     f"{res_w:.0f}x{res_h:.0f} image at any scale; use the videos of the "
                     "release (or copies scaled equally in both directions)")
  return scale


def to_frame_pixels(points_px: np.ndarray, scale: float) -> np.ndarray:
  """(..., 2) calibrated-image pixels -> pixels of a frame `scale` times as fine.

  Pixel centres are integers (data_prep.crops), so u maps to (u + 0.5) * scale - 0.5.
  """
  return (np.asarray(points_px, np.float64) + 0.5) * scale - 0.5


def crop_sample_points(k_crop: np.ndarray, camera: cameras_lib.Camera,
                       size: int = CROP_SIZE) -> np.ndarray:
  """Where the real camera sees each crop pixel's ray: (size, size, 2) (u, v) pixels.

  Args:
    k_crop: (3, 3) pinhole intrinsics of the crop.
    camera: one camera (unstacked), float64 numpy.
    size: crop side.

  Returns:
    (size, size, 2) distorted calibrated-image pixels; [i, j] belongs to crop row i,
    column j.
  """
  k_crop = np.asarray(k_crop, np.float64)
  rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
  x = (cols - k_crop[0, 2]) / k_crop[0, 0]
  y = (rows - k_crop[1, 2]) / k_crop[1, 1]
  rays = np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)
  return np.asarray(cameras_lib.project_distorted(rays, camera)).reshape(size, size, 2)


def sample_crop(frame: np.ndarray, points_px: np.ndarray, box_side_px: float,
                threshold: bool = False) -> np.ndarray:
  """Bilinear samples of a frame at given points, without aliasing.

  Args:
    frame: (H, W[, C]) uint8.
    points_px: (S, S, 2) frame pixels (u, v) to sample (`crop_sample_points` mapped with
      `to_frame_pixels`).
    box_side_px: the crop's side in frame pixels; when it is at least twice the crop's,
      the region is first shrunk by that integer factor with box filtering (PIL's
      `reduce`), so the bilinear sampling never skips pixels.
    threshold: for {0, 1} masks: return the interpolated coverage >= 0.5.

  Returns:
    (S, S[, C]) uint8; points outside the frame are black (0).
  """
  frame = np.asarray(frame)
  points = np.asarray(points_px, np.float64)
  size = points.shape[0]
  factor = max(1, int(box_side_px // size))
  # Only the region under the points (plus a margin) is read; its corner, a whole pixel,
  # becomes the origin.
  lo = np.floor([points[..., 0].min(), points[..., 1].min()]) - factor - 1
  hi = np.ceil([points[..., 0].max(), points[..., 1].max()]) + factor + 2
  width_height = (frame.shape[1], frame.shape[0])
  left, top = (int(v) for v in np.clip(lo, 0, width_height))
  right, bottom = (int(v) for v in np.clip(hi, 0, width_height))
  if right <= left or bottom <= top:  # wholly outside the frame
    return np.zeros((size, size) + frame.shape[2:], np.uint8)
  region = np.ascontiguousarray(frame[top:bottom, left:right])
  if threshold:  # full range, so shrinking keeps the coverage to 1/255
    region = (region > 0).astype(np.uint8) * 255
  points = points - np.array([left, top])
  if factor >= 2:
    region = np.asarray(PIL.Image.fromarray(region).reduce(factor))
    points = (points + 0.5) / factor - 0.5
  frame = region
  coordinates = [points[..., 1], points[..., 0]]  # (row, column)
  channels = frame[..., None] if frame.ndim == 2 else frame
  sampled = np.stack([
      scipy.ndimage.map_coordinates(channels[..., c].astype(np.float32), coordinates,
                                    order=1, mode="constant", cval=0.0)
      for c in range(channels.shape[-1])], -1)
  if threshold:
    sampled = (sampled >= 127.5).astype(np.uint8)
  else:
    sampled = np.clip(np.floor(sampled + 0.5), 0, 255).astype(np.uint8)
  return sampled[..., 0] if frame.ndim == 2 else sampled
