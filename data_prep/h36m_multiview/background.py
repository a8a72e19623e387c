"""Per-subject, per-camera backgrounds: the per-pixel median of sampled video frames.

Human3.6M films each subject in a static room, so the median over frames spread through
all of a subject's videos of one camera removes the moving person. As the original
preprocessing: every 64th frame of every video of that subject and camera.

A subject's samples at full resolution take gigabytes (about 1,500 frames of
1000 x 1000 x 3), so they are spooled to a temporary file and the median is taken in
strips of rows, which bounds the memory to `max_strip_bytes`.
"""

from __future__ import annotations

import pathlib
import tempfile
from typing import Sequence

import numpy as np

from data_prep.h36m_multiview import media

BACKGROUND_EVERY = 64


def median_image(samples: np.ndarray) -> np.ndarray:
  """(K, H, W, C) uint8 -> (H, W, C) uint8 per-pixel median (the mean of the two middle
  values when K is even), rounded half up."""
  return np.floor(np.median(samples, axis=0) + 0.5).astype(np.uint8)


def median_background(video_paths: Sequence[pathlib.Path], every: int = BACKGROUND_EVERY,
                      max_strip_bytes: int = 256 << 20,
                      temp_dir: str | None = None) -> np.ndarray:
  """The per-pixel median of frames 0, every, 2 * every, ... of each video.

  Args:
    video_paths: videos of one camera (all of one frame size).
    every: sampling step in frames.
    max_strip_bytes: memory for the samples of one strip of rows.
    temp_dir: where to spool the samples (default: the system's temporary folder).

  Returns:
    (H, W, 3) uint8.

  Raises:
    ValueError: videos of different frame sizes, or no frame at all.
  """
  if every < 1:
    raise ValueError(f"background sampling step must be >= 1, got {every}")
  shape = None
  count = 0
  with tempfile.TemporaryDirectory(prefix="h36m_background_", dir=temp_dir) as folder:
    spool_path = pathlib.Path(folder) / "samples.u8"
    with open(spool_path, "wb") as spool:
      for path in video_paths:
        for _, frame in media.iterate_frames(path, keep_every=every):
          if frame is None:
            continue
          if shape is None:
            shape = frame.shape
          elif frame.shape != shape:
            raise ValueError(f"{path}: frames are {frame.shape[1]}x{frame.shape[0]} px but "
                             f"{video_paths[0]} (same subject and camera) has "
                             f"{shape[1]}x{shape[0]}; the videos of one camera must share "
                             "one size")
          spool.write(np.ascontiguousarray(frame).tobytes())
          count += 1
    if shape is None:
      raise ValueError(f"no frame could be decoded from {[str(p) for p in video_paths]}")
    samples = np.memmap(spool_path, np.uint8, "r", shape=(count,) + shape)
    height = shape[0]
    row_bytes = count * int(np.prod(shape[1:]))
    rows = max(1, min(height, max_strip_bytes // max(row_bytes, 1)))
    result = np.empty(shape, np.uint8)
    for start in range(0, height, rows):
      result[start:start + rows] = median_image(np.asarray(samples[:, start:start + rows]))
    del samples
  return result
