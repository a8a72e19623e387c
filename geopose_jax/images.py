"""Users' images: a folder of frames or a video file, and square person crops of them.

Crops use geopose_jax.geometry.crops, the code the dataset builders crop with: a square box
around the person, resampled to size x size, parts outside the image black. The person
boxes come from geopose_jax.boxes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np
import PIL.Image
import tqdm

from geopose_jax.errors import InputError
from geopose_jax.geometry import crops

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ts", ".3gp", ".ogv")
# The builders widen the tight box around the joints by this factor.
BOX_SCALE = 1.08


@dataclasses.dataclass(frozen=True)
class FrameSource:
  """Frames of a folder or video. `frames()` yields (H, W, 3) uint8 images in order.

  `fps` is the video's frame rate, 0 where the input does not say (a folder of frames).
  """
  path: str
  width: int
  height: int
  num_frames: int
  files: tuple[str, ...] = ()
  fps: float = 0.0

  @property
  def is_video(self) -> bool:
    return not self.files

  def frames(self) -> Iterator[np.ndarray]:
    if self.files:
      for file in self.files:
        yield _read_image(file)
      return
    import av
    try:
      with av.open(self.path) as container:
        for frame in container.decode(video=0):
          yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as error:
      raise InputError(f"{self.path}: the video does not decode ({error}); expected a video "
                       f"file PyAV/FFmpeg can read, or a folder of frames") from None


def _read_image(file: str) -> np.ndarray:
  try:
    with PIL.Image.open(file) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, PIL.UnidentifiedImageError) as error:
    raise InputError(f"{file}: not a readable image ({error})") from None


def open_frames(path: str | os.PathLike) -> FrameSource:
  """A folder of images (sorted by name) or a video file, or InputError naming the path."""
  path = os.fspath(path)
  if os.path.isdir(path):
    files = tuple(sorted(os.path.join(path, n) for n in os.listdir(path)
                         if n.lower().endswith(IMAGE_EXTENSIONS)))
    if not files:
      raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                       f"expected the frames of a video (zero frames)")
    first = _read_image(files[0])
    return FrameSource(path, first.shape[1], first.shape[0], len(files), files)
  if not os.path.isfile(path):
    raise InputError(f"image input not found: {path}")
  import av
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise InputError(f"{path}: holds no video stream; expected a video file")
      stream = container.streams.video[0]
      first = next(container.decode(video=0), None)
      count = stream.frames
      fps = float(stream.average_rate or 0.0)
  except av.FFmpegError as error:
    raise InputError(f"{path}: the video does not decode ({error}); expected a video file "
                     f"PyAV/FFmpeg can read, or a folder of frames") from None
  if first is None:
    raise InputError(f"{path}: the video holds zero frames")
  if not count:  # containers without a frame count: count by decoding
    count = sum(1 for _ in FrameSource(path, 0, 0, 0).frames())
  return FrameSource(path, first.width, first.height, int(count), fps=fps)


def is_image_input(path: str | os.PathLike) -> bool:
  """Whether `path` is a video file or a folder of frames (no JSON keypoint files in it)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    names = [n.lower() for n in os.listdir(path)]
    return (any(n.endswith(IMAGE_EXTENSIONS) for n in names)
            and not any(n.endswith(".json") for n in names))
  return path.lower().endswith(VIDEO_EXTENSIONS)


def square_crop_box(box_xywh: np.ndarray, scale: float = BOX_SCALE) -> np.ndarray:
  """(..., 4) (x, y, w, h) -> (..., 3) square crop boxes (x0, y0, side) on the box centre,
  half side = the longer half side times `scale` (as crops.square_box with no padding)."""
  box = np.asarray(box_xywh, np.float64)
  centre = box[..., :2] + box[..., 2:] / 2.0
  corners = np.stack([box[..., :2], box[..., :2] + box[..., 2:]], axis=-2)
  return crops.square_box(corners, centre, 0.0, scale)


def person_crops(source: FrameSource, boxes_xywh: np.ndarray, size: int,
                 show_progress: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (crop (size, size, 3) uint8, crop box (3,)) per frame of `source`, decoding one
  frame at a time.

  Args:
    boxes_xywh: (N, 4) person boxes, one per frame (see `boxes.load_boxes`).
    size: crop side in pixels (the model's input size).

  Raises:
    InputError: the input ends before N frames (a video whose header over-counts).
  """
  boxes = square_crop_box(boxes_xywh)
  frames = tqdm.tqdm(source.frames(), total=min(len(boxes), source.num_frames) or None,
                     desc="cropping frames", unit="frame", disable=not show_progress,
                     leave=False)
  count = 0
  for frame in frames:
    if count >= len(boxes):
      break
    yield crops.crop_image(frame, boxes[count], size), boxes[count]
    count += 1
  if count < len(boxes):
    raise InputError(f"{source.path}: ended after {count} frames, but {len(boxes)} were "
                     f"expected (the frame count its header gives); re-encode the video")
