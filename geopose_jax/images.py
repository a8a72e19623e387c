"""Users' images: a folder of frames or a video file, per-frame person boxes, square crops.

Crops use geopose_jax.geometry.crops, the code the dataset builders crop with: a square box
around the person, resampled to size x size, parts outside the image black.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Iterator

import numpy as np
import PIL.Image
import tqdm

from geopose_jax.errors import InputError
from geopose_jax.geometry import crops

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# The builders widen the tight box around the joints by this factor.
BOX_SCALE = 1.08


@dataclasses.dataclass(frozen=True)
class FrameSource:
  """Frames of a folder or video. `frames()` yields (H, W, 3) uint8 images in order."""
  path: str
  width: int
  height: int
  num_frames: int
  files: tuple[str, ...] = ()

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
  except av.FFmpegError as error:
    raise InputError(f"{path}: the video does not decode ({error}); expected a video file "
                     f"PyAV/FFmpeg can read, or a folder of frames") from None
  if first is None:
    raise InputError(f"{path}: the video holds zero frames")
  if not count:  # containers without a frame count: count by decoding
    count = sum(1 for _ in FrameSource(path, 0, 0, 0).frames())
  return FrameSource(path, first.width, first.height, int(count))


def read_box_file(path: str | os.PathLike) -> dict[int, np.ndarray]:
  """Per-frame boxes (x, y, w, h) in pixels from a box file.

  Accepted: CSV with header `frame,x,y,w,h`; JSON `{"<frame>": [x, y, w, h], ...}` or
  `[{"frame": 0, "bbox": [x, y, w, h]}, ...]`.
  """
  path = os.fspath(path)
  boxes: dict[int, np.ndarray] = {}
  if path.lower().endswith(".csv"):
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      if not {"frame", "x", "y", "w", "h"} <= set(reader.fieldnames or []):
        raise InputError(f"{path}: expected a CSV header frame,x,y,w,h")
      for line, row in enumerate(reader, start=2):
        try:
          boxes[int(row["frame"])] = np.array([float(row[k]) for k in "xywh"])
        except ValueError:
          raise InputError(f"{path}: line {line}: expected numbers frame,x,y,w,h") from None
  else:
    from geopose_jax.keypoints import _common
    data = _common.load_json(path)
    items = (data.items() if isinstance(data, dict) else
             ((d.get("frame"), d.get("bbox")) for d in data if isinstance(d, dict)))
    for frame, box in items:
      box = np.asarray(box if box is not None else [], np.float64).reshape(-1)
      if box.size != 4:
        raise InputError(f"{path}: frame {frame!r}: box {box.tolist()} is not [x, y, w, h]")
      boxes[_common.frame_number(frame, path, "frame")] = box
  if not boxes:
    raise InputError(f"{path}: holds zero boxes; expected one [x, y, w, h] per frame")
  return boxes


def load_boxes(path: str | os.PathLike, source: FrameSource, track_id: int | None = None
               ) -> np.ndarray:
  """(source.num_frames, 4) person boxes (x, y, w, h) for every frame of `source`.

  `path` is a box file (see `read_box_file`) or a keypoint file whose people have boxes
  (COCO `bbox`, AlphaPose `box`; the person chosen as `read_keypoints` chooses).
  """
  path = os.fspath(path)
  from geopose_jax.keypoints import detect_format, read_keypoints
  try:
    fmt = detect_format(path)
  except InputError:
    fmt = None
  if fmt in ("coco", "halpe"):
    seq, = read_keypoints(path, format=fmt, track_id=track_id, width=source.width,
                          height=source.height, min_confidence=0.0)
    if seq.boxes is None:
      raise InputError(f"{path}: its detections have no 'bbox' or 'box'; give a box file "
                       f"(CSV frame,x,y,w,h or JSON) for the image input")
    boxes = dict(zip(seq.frames.tolist(), seq.boxes.astype(np.float64)))
  else:
    boxes = read_box_file(path)
  return dense_boxes(boxes, source.num_frames, source.width, source.height, path)


def dense_boxes(boxes: dict[int, np.ndarray], num_frames: int, width: int, height: int,
                origin: str) -> np.ndarray:
  """(num_frames, 4) boxes for frames 0..num_frames-1: a frame without one takes the nearest
  earlier (else later) box. Boxes that miss the image are an InputError."""
  from geopose_jax.keypoints.sequence import check_boxes_inside
  frames = np.array(sorted(boxes))
  stacked = np.stack([boxes[f] for f in frames])
  check_boxes_inside(stacked, width, height, frames, origin)
  index = np.clip(np.searchsorted(frames, np.arange(num_frames), side="right") - 1, 0, None)
  return stacked[index]


def square_crop_box(box_xywh: np.ndarray, scale: float = BOX_SCALE) -> np.ndarray:
  """(..., 4) (x, y, w, h) -> (..., 3) square crop boxes (x0, y0, side) on the box centre,
  half side = the longer half side times `scale` (as crops.square_box with no padding)."""
  box = np.asarray(box_xywh, np.float64)
  centre = box[..., :2] + box[..., 2:] / 2.0
  corners = np.stack([box[..., :2], box[..., :2] + box[..., 2:]], axis=-2)
  return crops.square_box(corners, centre, 0.0, scale)


def person_crops(source: FrameSource, boxes_xywh: np.ndarray, size: int,
                 show_progress: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (crop (size, size, 3) uint8, crop box (3,)) per frame of `source`.

  Args:
    boxes_xywh: (N, 4) person boxes, one per frame (see `dense_boxes`).
    size: crop side in pixels (the model's input size).
  """
  boxes = square_crop_box(boxes_xywh)
  frames = tqdm.tqdm(source.frames(), total=min(len(boxes), source.num_frames) or None,
                     desc="cropping frames", unit="frame", disable=not show_progress,
                     leave=False)
  for i, frame in enumerate(frames):
    if i >= len(boxes):
      break
    yield crops.crop_image(frame, boxes[i], size), boxes[i]
