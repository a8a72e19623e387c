"""Side-by-side renders of a sequence: input frame or 2D skeleton | 3D skeleton, as MP4 / GIF.

Drawn with PIL (a few lines per frame), not a matplotlib figure per frame: a 3,000-frame
sequence renders in well under two minutes on two CPU cores. Colours follow
geopose_jax.viz.skeleton_plot (left limbs blue, right red, the spine grey). The 3D panel is
an orthographic view of the root-centred pose from `azimuth` degrees around the vertical
axis and `elevation` degrees above, scaled once for the whole sequence.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import matplotlib.colors
import numpy as np
import PIL.Image
import PIL.ImageDraw
import tqdm

from geopose_jax import skeleton
from geopose_jax.errors import InputError
from geopose_jax.viz import skeleton_plot

_COLORS = [tuple(int(255 * c) for c in matplotlib.colors.to_rgb(name))
           for name in skeleton_plot.bone_colors()]
_BACKGROUND = (255, 255, 255)
_GRID = (225, 225, 225)
_BOX = (40, 200, 60)
GIF_MAX_FRAMES = 150


def _even(n: int) -> int:
  return n + (n % 2)


def _draw_skeleton(draw: PIL.ImageDraw.ImageDraw, points: np.ndarray, width: int) -> None:
  for j, p in enumerate(skeleton.H36M_PARENTS):
    if p >= 0:
      draw.line([tuple(points[p]), tuple(points[j])], fill=_COLORS[j], width=width)


def view_rotation(azimuth: float, elevation: float) -> np.ndarray:
  """(3, 3) camera-frame -> view rotation: turn about the vertical (y) axis, then tilt."""
  a, e = np.radians(azimuth), np.radians(elevation)
  turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  tilt = np.array([[1, 0, 0], [0, np.cos(e), np.sin(e)], [0, -np.sin(e), np.cos(e)]])
  return tilt @ turn


def project_3d_panel(poses_cam: np.ndarray, size: int, azimuth: float = 30.0,
                     elevation: float = 15.0) -> np.ndarray:
  """(N, 17, 3) camera-frame poses -> (N, 17, 2) panel pixels (root-centred, one scale)."""
  rel = np.asarray(poses_cam, np.float64) - poses_cam[:, skeleton.H36M_ROOT:1 + skeleton.H36M_ROOT]
  view = rel @ view_rotation(azimuth, elevation).T
  radius = max(float(np.percentile(np.abs(view[..., :2]), 99.5)), 1e-6)
  scale = 0.45 * size / radius
  return view[..., :2] * scale + size / 2.0


def skeleton_window(pose_2d_px: np.ndarray, panel: int, margin: float = 0.1
                    ) -> tuple[float, np.ndarray]:
  """(scale, origin) so that (p - origin) * scale puts every (N, 17, 2) point of the sequence
  inside a panel x panel square, centred, with `margin` of the side left free."""
  lo = np.nanmin(pose_2d_px.reshape(-1, 2), axis=0)
  hi = np.nanmax(pose_2d_px.reshape(-1, 2), axis=0)
  side = max(float(np.max(hi - lo)), 1e-6) * (1 + 2 * margin)
  centre = (lo + hi) / 2
  return panel / side, centre - side / 2


def _fit_image(image: np.ndarray, height: int) -> PIL.Image.Image:
  pil = PIL.Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
  width = _even(max(2, round(pil.width * height / pil.height)))
  return pil.resize((width, height), PIL.Image.BILINEAR)


def render_frames(poses_cam: np.ndarray, pose_2d_px: np.ndarray | None,
                  image_size: tuple[int, int], images: Iterable[np.ndarray] | None = None,
                  panel: int = 360, azimuth: float = 30.0, elevation: float = 15.0,
                  boxes_xywh: np.ndarray | None = None) -> Iterator[np.ndarray]:
  """Yields (panel, W, 3) uint8 frames: left the input frame with the 2D skeleton and/or
  the person's box (without frames: the 2D skeleton in a square around the sequence's
  extent), right the 3D skeleton.

  Args:
    poses_cam: (N, 17, 3) camera-frame 3D poses (any unit).
    pose_2d_px: (N, 17, 2) input 2D in pixels of an image of `image_size` (width, height),
      or None (image input: no 2D skeleton; `images` required).
    images: optional N frames (H, W, 3) uint8 of that size, drawn under the 2D skeleton.
    panel: height of the picture (and side of the 3D panel) in pixels, even.
    boxes_xywh: optional (N, 4) person boxes (x, y, w, h) in pixels, drawn on the frame.
  """
  poses_cam = np.asarray(poses_cam)
  if pose_2d_px is None:
    if images is None:
      raise InputError("render: without 2D poses the input frames must be given")
    pose_2d_px = np.full(poses_cam.shape[:2] + (2,), np.nan)
  pose_2d_px = np.asarray(pose_2d_px, np.float64)
  if poses_cam.shape[1:] != (17, 3) or pose_2d_px.shape != poses_cam.shape[:2] + (2,):
    raise InputError(f"render: expected (N, 17, 3) and (N, 17, 2) poses, got "
                     f"{poses_cam.shape} and {pose_2d_px.shape}")
  if boxes_xywh is not None and np.shape(boxes_xywh) != (len(poses_cam), 4):
    raise InputError(f"render: expected ({len(poses_cam)}, 4) boxes, got "
                     f"{np.shape(boxes_xywh)}")
  panel = _even(panel)
  width, height = image_size
  if images is not None:
    left_w = _even(max(2, round(width * panel / height)))
    scale_2d, origin_2d = panel / height, np.zeros(2)
  else:
    # Without frames, a square around everything the person covers in the sequence, so a
    # small figure in a large frame is still visible.
    left_w = panel
    scale_2d, origin_2d = skeleton_window(pose_2d_px, panel)
  right = project_3d_panel(poses_cam, panel, azimuth, elevation)
  line = max(2, panel // 120)
  blank = PIL.Image.new("RGB", (left_w + panel, panel), _BACKGROUND)
  grid = PIL.ImageDraw.Draw(blank)
  for k in range(1, 8):
    grid.line([(left_w + k * panel / 8, 0), (left_w + k * panel / 8, panel)], fill=_GRID)
    grid.line([(left_w, k * panel / 8), (left_w + panel, k * panel / 8)], fill=_GRID)
  grid.line([(left_w, 0), (left_w, panel)], fill=(160, 160, 160), width=2)
  image_iter = iter(images) if images is not None else None
  for i in range(len(poses_cam)):
    canvas = blank.copy()
    if image_iter is not None:
      frame = next(image_iter, None)
      if frame is None:
        raise InputError(f"render: the video has fewer frames ({i}) than the poses "
                         f"({len(poses_cam)})")
      fitted = _fit_image(frame, panel)
      canvas.paste(fitted.crop((0, 0, left_w, panel)), (0, 0))
    draw = PIL.ImageDraw.Draw(canvas)
    if boxes_xywh is not None:
      x, y, w, h = (float(v) * scale_2d for v in boxes_xywh[i])
      draw.rectangle([x, y, x + w, y + h], outline=_BOX, width=line)
    if np.isfinite(pose_2d_px[i]).all():
      _draw_skeleton(draw, (pose_2d_px[i] - origin_2d) * scale_2d, line)
    _draw_skeleton(draw, right[i] + np.array([left_w, 0.0]), line)
    yield np.asarray(canvas)


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float,
              num_frames: int | None = None, show_progress: bool = True) -> int:
  """Encodes (H, W, 3) uint8 frames (even H, W) as H.264 (MPEG-4 part 2 where libx264 is
  missing) through a temporary name; returns the number of frames written."""
  import av  # imported here so reading keypoints does not load the video codecs
  path = os.fspath(path)
  tmp = path + ".tmp.mp4"
  count = 0
  try:
    with av.open(tmp, mode="w") as container:
      stream = None
      for frame in tqdm.tqdm(frames, total=num_frames, desc="rendering MP4", unit="frame",
                             disable=not show_progress, leave=False):
        if stream is None:
          codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
          stream = container.add_stream(codec, rate=round(fps))
          stream.height, stream.width = frame.shape[:2]
          stream.pix_fmt = "yuv420p"
          if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
          container.mux(packet)
        count += 1
      if stream is not None:
        for packet in stream.encode():
          container.mux(packet)
    if count == 0:
      raise InputError(f"render: no frames to write to {path}")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return count


def write_gif(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float,
              max_frames: int = GIF_MAX_FRAMES, width: int = 480) -> int:
  """Writes every k-th frame (at most `max_frames`, `width` pixels wide) as a looping GIF.

  `frames` must be a sequence (its length picks k). Returns the number of GIF frames.
  """
  frames = list(frames) if not hasattr(frames, "__len__") else frames
  step = max(1, -(-len(frames) // max_frames))
  picked = []
  for frame in frames[::step]:
    pil = PIL.Image.fromarray(frame)
    picked.append(pil.resize((width, max(1, round(pil.height * width / pil.width))),
                             PIL.Image.BILINEAR).quantize(colors=64))
  if not picked:
    raise InputError(f"render: no frames to write to {path}")
  path = os.fspath(path)
  tmp = path + ".tmp.gif"
  picked[0].save(tmp, format="GIF", save_all=True, append_images=picked[1:], loop=0,
                 duration=max(20, round(1000 * step / fps)))
  os.replace(tmp, path)
  return len(picked)
