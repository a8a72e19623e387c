"""Where each view's crop lies, its intrinsics, and cutting it out of a video frame.

Geometry lives in the calibrated image: the full-resolution pixel grid of the published
Human3.6M calibration (1000 x 1000 or 1000 x 1002). `pose_2d_px` is the distorted
projection there, as the release's own D2_Positions; the crop box is a square centred on
the projected root whose half side covers the projected joints plus a body radius; `K` is
the pinhole intrinsics of the crop (data_prep.crops.crop_intrinsics) and `pose_2d_crop`
is K applied to the camera-frame pose.

Frames whose size differs from the calibration (a re-encoded, down-scaled copy of the
release, the tiny videos of the tests) are taken as the calibrated image scaled by
s = frame width / calibrated width in both directions (pixels stay square; the 1000 vs
1002 px height variants differ by whole rows at the bottom, not by a scale). The box is
mapped onto the frame's pixels with that scale, so records from a scaled copy have the
same geometry (K, 2D) as from the original; only the image detail differs.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

from data_prep import crops
from data_prep.synthetic_multiview import features as multiview_record
from geopose_jax.geometry import cameras as cameras_lib

CROP_SIZE = multiview_record.CROP_SIZE
# Margin around the projected joints: a body radius (mm) at the root's depth, then a factor
# (the synthetic default's choice, so both datasets frame the person alike).
BODY_PAD_MM = 140.0
BOX_SCALE = 1.08
# A frame whose height differs from (calibrated height * s) by more than this fraction is
# not a scaled copy of the calibrated image.
_ASPECT_TOLERANCE = 0.01


def numpy_cameras(cameras: cameras_lib.Camera, dtype=np.float64) -> cameras_lib.Camera:
  """The camera stack with numpy fields of `dtype` (preparation stays on the host)."""
  return cameras_lib.Camera(**{k: np.asarray(getattr(cameras, k), dtype)
                               for k in ("R", "t", "f", "c", "k", "p", "res")})


def frame_geometry(pose_world: np.ndarray, cameras: cameras_lib.Camera,
                   size: int = CROP_SIZE) -> dict[str, np.ndarray]:
  """Camera-frame pose, 2D projections, crop boxes and crop intrinsics of one frame.

  Args:
    pose_world: (17, 3) world mm.
    cameras: Camera stacked (4,), float64 numpy (see `numpy_cameras`).
    size: crop side in pixels.

  Returns:
    pose_3d_cam (4, 17, 3) mm, pose_2d_px (4, 17, 2) distorted calibrated-image pixels,
    box (4, 3) (x0, y0, side) in calibrated-image pixels, K (4, 3, 3), pose_2d_crop
    (4, 17, 2) crop pixels; all float32 but `box` (float64).
  """
  pose = np.broadcast_to(np.asarray(pose_world, np.float64), (4,) + np.shape(pose_world))
  pose_cam = cameras_lib.world_to_camera(pose, cameras)
  distorted = cameras_lib.project_distorted(pose_cam, cameras)
  # The box follows the distorted projection: that is where the person is in the frame.
  pad = cameras.f.mean(axis=-1) * BODY_PAD_MM / pose_cam[:, 0, 2]
  box = crops.square_box(distorted, distorted[:, 0], pad, BOX_SCALE)
  k_crop = crops.crop_intrinsics(cameras.f, cameras.c, box, size)
  pose_2d_crop = cameras_lib.project_with_intrinsics(pose_cam, k_crop.astype(np.float64))
  return {"pose_3d_cam": pose_cam.astype(np.float32),
          "pose_2d_px": distorted.astype(np.float32), "box": box,
          "K": k_crop, "pose_2d_crop": pose_2d_crop.astype(np.float32)}


def scale_box(box: np.ndarray, scale: float) -> np.ndarray:
  """(..., 3) box of one pixel grid -> the same region on a grid `scale` times as fine.

  Pixel centres are integers (data_prep.crops), so a position u maps to
  (u + 0.5) * scale - 0.5 and a length to length * scale.
  """
  box = np.asarray(box, np.float64)
  return np.concatenate([(box[..., :2] + 0.5) * scale - 0.5, box[..., 2:] * scale], axis=-1)


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


def crop_frame(frame: np.ndarray, box: np.ndarray, size: int = CROP_SIZE,
               resample: int = PIL.Image.BILINEAR) -> np.ndarray:
  """Cuts the square `box` (frame pixels) out of an (H, W[, C]) uint8 frame at size^2.

  A box much larger than the crop is first shrunk by an integer factor with box
  filtering (PIL's `reduce`), so the final resampling never skips pixels (no aliasing);
  on {0, 1} masks that factor takes the majority.
  """
  box = np.asarray(box, np.float64)
  factor = int(box[2] // size)
  if factor >= 2:
    image = PIL.Image.fromarray(np.asarray(frame))
    # Only the part of the frame under the box (plus a block of margin) is shrunk; its
    # corner becomes the origin, at a whole pixel, so positions map as in `scale_box`.
    lo = np.floor(box[:2] + 0.5) - factor
    hi = np.ceil(box[:2] + box[2] + 0.5) + factor
    left, top = (int(v) for v in np.clip(lo, 0, image.size))
    right, bottom = (int(v) for v in np.clip(hi, 0, image.size))
    if right <= left or bottom <= top:  # the box lies wholly outside the frame
      return np.zeros((size, size) + np.shape(frame)[2:], np.uint8)
    frame = np.asarray(image.reduce(factor, box=(left, top, right, bottom)))
    box = scale_box(box - np.array([left, top, 0.0]), 1.0 / factor)
  return crops.crop_image(frame, box, size, resample)
