"""Image grids, PNG and GIF writing (Pillow only; no display needed).

Images are uint8 `(H, W, 3)` arrays. Every writer writes to a temporary file in the target
folder and renames it, so an interrupted run never leaves a half-written picture behind.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Sequence

import numpy as np
from PIL import Image


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] (or uint8) -> uint8 `(H, W, 3)`; grey `(H, W)` is repeated to RGB."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  image = image[..., :3]
  if image.dtype == np.uint8:
    return image
  return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of a uint8 `(H, W, 3)` image to `(height, width, 3)`."""
  image = to_uint8(image)
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def make_grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2,
              pad_value: int = 255) -> np.ndarray:
  """Tiles rows of images into one uint8 image.

  Args:
    rows: a list of rows, each a list of images `(h, w, 3)` (uint8, or float in [0, 1]).
      Rows may differ in length; every cell takes the size of the first image, others are
      resized to it.
    pad: pixels between cells and around the border.
    pad_value: grey level of the padding.

  Returns:
    `(H, W, 3)` uint8 with H = n_rows * (h + pad) + pad, W = max_cols * (w + pad) + pad.
  """
  rows = [list(row) for row in rows if len(row)]
  if not rows:
    raise ValueError("make_grid needs at least one image")
  h, w = to_uint8(rows[0][0]).shape[:2]
  num_cols = max(len(row) for row in rows)
  grid = np.full((len(rows) * (h + pad) + pad, num_cols * (w + pad) + pad, 3), pad_value,
                 np.uint8)
  for r, row in enumerate(rows):
    for c, image in enumerate(row):
      y, x = pad + r * (h + pad), pad + c * (w + pad)
      grid[y:y + h, x:x + w] = resize(image, h, w)
  return grid


def _atomic_target(path: pathlib.Path) -> tuple[int, str]:
  path.parent.mkdir(parents=True, exist_ok=True)
  return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)


def save_png(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
  """Writes a uint8 (or [0, 1] float) image as PNG, atomically."""
  path = pathlib.Path(path)
  fd, tmp = _atomic_target(path)
  try:
    with os.fdopen(fd, "wb") as f:
      Image.fromarray(to_uint8(image)).save(f, format="PNG")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def save_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 10.0,
             loop: int = 0) -> pathlib.Path:
  """Writes frames (each `(H, W, 3)`, same size) as an animated GIF, atomically."""
  if not len(frames):
    raise ValueError(f"no frames to write to {path}")
  path = pathlib.Path(path)
  images = [Image.fromarray(to_uint8(frame)) for frame in frames]
  size = images[0].size
  if any(image.size != size for image in images):
    raise ValueError(f"GIF frames for {path} differ in size")
  fd, tmp = _atomic_target(path)
  try:
    with os.fdopen(fd, "wb") as f:
      images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                     duration=int(round(1000.0 / fps)), loop=loop)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def figure_to_image(fig) -> np.ndarray:
  """Renders a matplotlib figure (Agg canvas) to a uint8 `(H, W, 3)` array."""
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
