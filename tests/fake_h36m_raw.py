"""A miniature raw Human3.6M release in the real file formats, for tests.

Writes, under a folder the test owns, per subject:
  MyPoseFeatures/D3_Positions/<pose name>.cdf      (cdflib; "Pose" (1, N, 96) world mm)
  Videos/<video name>.<camera>.mp4                 (PyAV, H.264, small frames)
  MySegmentsMat/ground_truth_bs/<video name>.<camera>.mat   (h5py, MATLAB v7.3 layout)
Pose and video names may differ as in the release ("TakingPhoto 1" / "Photo 1").

Frames are tiny (VIDEO_SIZES per camera): the calibrated image scaled down, as
data_prep/h36m_multiview/framing.py expects. Each frame shows a static per-camera pattern
with the person drawn as a red rectangle over the box of its projected joints; the masks
are that rectangle.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from geopose_jax.geometry import cameras as cameras_lib

CAMERA_IDS = cameras_lib.H36M_CAMERA_IDS
# (width, height) per camera; cameras 0 and 3 are 1000 x 1002 in the calibration.
VIDEO_SIZES = ((100, 100), (64, 64), (64, 64), (80, 80))
PERSON_RGB = (230, 20, 20)


@dataclasses.dataclass(frozen=True)
class FakeSequence:
  """One sequence to write.

  Attributes:
    pose_name: the D3_Positions file's name ("TakingPhoto 1").
    video_name: the videos' and masks' name ("Photo 1").
    num_poses: frames of mocap.
    num_video_frames: frames of each video (the release's run a little longer).
    masks: write the ground_truth_bs files.
    seed: of the motion.
  """
  pose_name: str
  video_name: str
  num_poses: int
  num_video_frames: int
  masks: bool = False
  seed: int = 0


def world_poses(seq: FakeSequence) -> np.ndarray:
  """(N, 32, 3) float64 world mm: a body-sized joint cloud walking slowly, z up."""
  rng = np.random.default_rng(seq.seed)
  offsets = rng.uniform(-1.0, 1.0, (32, 3)) * np.array([250.0, 250.0, 800.0])
  offsets[0] = 0.0  # the root at the body's centre
  start = np.array([rng.uniform(-300, 300), rng.uniform(-300, 300), 950.0])
  steps = np.arange(seq.num_poses)[:, None, None] * np.array([8.0, -5.0, 0.0])
  return start + offsets + steps


def _numpy_cameras(subject: str) -> cameras_lib.Camera:
  cams = cameras_lib.load_h36m_cameras(subject)
  return cameras_lib.Camera(**{k: np.asarray(getattr(cams, k), np.float64)
                               for k in ("R", "t", "f", "c", "k", "p", "res")})


def person_boxes(world_mm: np.ndarray, subject: str, view: int) -> np.ndarray:
  """(N, 4) integer (u0, v0, u1, v1) video-pixel rectangles of the person in one view."""
  camera = _numpy_cameras(subject)[view]
  pixels = cameras_lib.project_distorted(cameras_lib.world_to_camera(world_mm, camera), camera)
  scale = VIDEO_SIZES[view][0] / camera.res[0]
  pixels = (pixels + 0.5) * scale - 0.5
  low, high = np.floor(pixels.min(axis=1)), np.ceil(pixels.max(axis=1))
  return np.concatenate([low, high], axis=-1).astype(int)


def scene(view: int, height: int, width: int) -> np.ndarray:
  """(H, W, 3) uint8 static pattern of one camera."""
  v, u = np.mgrid[0:height, 0:width]
  return np.stack([(40 + 2 * u + 30 * view) % 200, (60 + 2 * v) % 200,
                   np.full_like(u, 90 + 40 * view)], -1).astype(np.uint8)


def person_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
  """(H, W) uint8 {0, 1}: the rectangle `box` clipped to the frame."""
  mask = np.zeros((height, width), np.uint8)
  u0, v0, u1, v1 = box
  mask[max(v0, 0):max(v1 + 1, 0), max(u0, 0):max(u1 + 1, 0)] = 1
  return mask


def write_video(path: pathlib.Path, frames: np.ndarray, fps: int = 50) -> None:
  """(N, H, W, 3) uint8 -> an H.264 .mp4 (quantiser 0, full chroma: near lossless)."""
  import av
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream("libx264", rate=fps, options={"qp": "0"})
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv444p"
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_pose_cdf(path: pathlib.Path, pose: np.ndarray) -> None:
  """(N, J, D) -> variable "Pose" (1, N, J * D) as the release stores it."""
  from cdflib import cdfwrite
  path.parent.mkdir(parents=True, exist_ok=True)
  path.unlink(missing_ok=True)  # cdflib refuses to overwrite
  data = np.asarray(pose, np.float64).reshape(1, len(pose), -1)
  writer = cdfwrite.CDF(str(path))
  writer.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE,
                    "Num_Elements": 1, "Rec_Vary": True, "Dim_Sizes": list(data.shape[1:])},
                   var_data=data)
  writer.close()


def write_mask_mat(path: pathlib.Path, masks: np.ndarray) -> None:
  """(N, H, W) {0, 1} -> MATLAB v7.3 cell array "Masks": (N, 1) references to (W, H)."""
  import h5py
  path.parent.mkdir(parents=True, exist_ok=True)
  with h5py.File(str(path), "w") as file:
    refs = file.create_group("#refs#")
    references = np.empty((len(masks), 1), dtype=h5py.ref_dtype)
    for index, mask in enumerate(masks):
      dataset = refs.create_dataset(f"m{index}", data=np.asarray(mask, np.uint8).T)
      dataset.attrs["MATLAB_class"] = np.bytes_("logical")
      references[index, 0] = dataset.ref
    cell = file.create_dataset("Masks", data=references)
    cell.attrs["MATLAB_class"] = np.bytes_("cell")


def write_sequence(root: pathlib.Path, subject: str, seq: FakeSequence) -> np.ndarray:
  """Writes one sequence's pose, 4 videos and (optionally) 4 mask files; returns world mm."""
  world = world_poses(seq)
  write_pose_cdf(root / subject / "MyPoseFeatures" / "D3_Positions" / f"{seq.pose_name}.cdf",
                 world)
  from geopose_jax.skeleton import H36M_32_TO_17
  body = world[:, list(H36M_32_TO_17)]
  # The video runs on past the mocap; the person stays where the last pose left it.
  padded = np.concatenate([body, np.repeat(body[-1:], seq.num_video_frames, 0)])
  padded = padded[:seq.num_video_frames]
  for view, camera in enumerate(CAMERA_IDS):
    width, height = VIDEO_SIZES[view]
    boxes = person_boxes(padded, subject, view)
    masks = np.stack([person_mask(b, height, width) for b in boxes])
    frames = np.where(masks[..., None] > 0, np.array(PERSON_RGB, np.uint8),
                      scene(view, height, width))
    name = f"{seq.video_name}.{camera}"
    write_video(root / subject / "Videos" / f"{name}.mp4", frames)
    if seq.masks:
      write_mask_mat(root / subject / "MySegmentsMat" / "ground_truth_bs" / f"{name}.mat",
                     masks)
  return world


def decode_video(path: pathlib.Path) -> np.ndarray:
  """(N, H, W, 3) uint8: every frame, decoded independently of the builder."""
  import av
  with av.open(str(path)) as container:
    return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
