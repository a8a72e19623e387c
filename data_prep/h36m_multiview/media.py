"""Reading the raw release's videos (PyAV) and foreground masks (h5py), lazily imported.

PyAV, cdflib and h5py are the `[h36m]` extra: only this preparation needs them, so they
are imported inside the functions and `require_packages` turns their absence into one
message saying what to install.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
from typing import Iterator

import numpy as np

# (import name, PyPI name): what reading the raw release needs.
_PACKAGES = (("av", "av"), ("cdflib", "cdflib"), ("h5py", "h5py"))


def require_packages() -> None:
  """Raises one ImportError naming every missing package of the `[h36m]` extra."""
  missing = []
  for module, package in _PACKAGES:
    try:
      importlib.import_module(module)
    except ImportError:
      missing.append(package)
  if missing:
    raise ImportError(
        f"building h36m_multiview from the raw Human3.6M release needs {', '.join(missing)} "
        "(videos: av, poses: cdflib, masks: h5py), which is not installed; install the "
        "extra with: pip install -e '.[h36m]'")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Header facts of one video: frame size and (when the container says) frame count."""
  path: pathlib.Path
  width: int
  height: int
  num_frames: int  # 0 when the container does not record it


def probe_video(path: pathlib.Path) -> VideoInfo:
  """Opens a video's header without decoding it.

  Raises:
    FileNotFoundError: no such file. ValueError: not a readable video.
  """
  import av  # the [h36m] extra
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such video; the raw Human3.6M layout is "
                            "S<n>/Videos/<Action>[ <k>].<camera>.mp4")
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise ValueError(f"{path}: holds no video stream")
      stream = container.streams.video[0]
      return VideoInfo(path, int(stream.codec_context.width),
                       int(stream.codec_context.height), int(stream.frames or 0))
  except av.FFmpegError as error:
    raise ValueError(f"{path}: not a readable video ({type(error).__name__}: {error}); the "
                     "file is corrupt or truncated, extract it again from the release") from error


def iterate_frames(path: pathlib.Path, keep_every: int = 1
                   ) -> Iterator[tuple[int, np.ndarray | None]]:
  """Decodes a video in order: yields (index, (H, W, 3) uint8 RGB or None).

  Every frame is decoded (inter-frame codecs need it) but only every `keep_every`-th one
  is converted to an array; the others come as None, which keeps decoding cheap.

  Raises:
    ValueError: a decoding error, naming the file and the frame.
  """
  import av  # the [h36m] extra
  index = -1
  try:
    with av.open(str(path)) as container:
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      for index, frame in enumerate(container.decode(stream)):
        yield index, frame.to_ndarray(format="rgb24") if index % keep_every == 0 else None
  except av.FFmpegError as error:
    raise ValueError(f"{path}: decoding failed after frame {index} ({type(error).__name__}: "
                     f"{error}); the video is corrupt, extract it again from the release "
                     "(the known-broken S11 'Directions' video is skipped on its own)") from error


class MaskFile:
  """Foreground masks of one (sequence, camera): MATLAB v7.3 (HDF5) variable "Masks".

  The release stores a cell array of N logical images: an (N, 1) or (1, N) dataset of
  object references, each to a (W, H) array (MATLAB's column-major order, so transposed
  here). A plain (N, W, H) logical array is read as well.
  """

  def __init__(self, path: pathlib.Path):
    import h5py  # the [h36m] extra
    self.path = path
    try:
      self._file = h5py.File(str(path), "r")
    except OSError as error:
      raise ValueError(f"{path}: not a readable MATLAB v7.3 (HDF5) mask file ({error}); "
                       "the file is corrupt or was saved in an older MATLAB format") from error
    if "Masks" not in self._file:
      keys = list(self._file.keys())
      self._file.close()
      raise ValueError(f"{path}: has no variable 'Masks' (it holds {keys}); expected the "
                       "release's MySegmentsMat/ground_truth_bs files")
    masks = self._file["Masks"]
    self._is_references = masks.dtype == h5py.ref_dtype
    if self._is_references:
      self._references = np.asarray(masks).reshape(-1)
      self.num_frames = len(self._references)
    elif masks.ndim == 3:
      self.num_frames = masks.shape[0]
    else:
      self._file.close()
      raise ValueError(f"{path}: 'Masks' has shape {masks.shape} and dtype {masks.dtype}; "
                       "expected a cell array of per-frame logical images")

  def frame(self, index: int) -> np.ndarray:
    """(H, W) uint8 {0, 1} mask of frame `index`."""
    if self._is_references:
      data = np.asarray(self._file[self._references[index]])
    else:
      data = np.asarray(self._file["Masks"][index])
    if data.ndim != 2:
      raise ValueError(f"{self.path}: mask of frame {index} has shape {data.shape}; "
                       "expected a 2-D logical image")
    return (data.T != 0).astype(np.uint8)

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> "MaskFile":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
