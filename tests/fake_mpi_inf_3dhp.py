"""Tiny fakes of the MPI-INF-3DHP release in its real formats.

Test set: TS<k>/annot_data.mat written as MATLAB v7.3 writes it (HDF5 with the 512-byte
MATLAB header, arrays column-major so h5py sees their dimensions reversed), frames as
JPEGs of the real sizes. Training set: S<n>/Seq<m>/annot.mat (MATLAB v5 cells, scipy.io)
and camera.calibration. Poses are in the release's own joint orders; 2D is the pinhole
projection of annot3 through the camera the readers use, so crops can be checked exactly.
"""

from __future__ import annotations

import pathlib

import numpy as np
import PIL.Image
import PIL.ImageDraw

from data_prep.mpi_inf_3dhp import readers

MATLAB_HEADER = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 "
                 b"HDF5 schema 1.00 .")


def body_cam_mm(rng: np.random.Generator, num_frames: int, num_joints: int, root: int
                ) -> np.ndarray:
  """(N, J, 3) camera-frame mm: a body-sized cloud about 4 m in front of the camera."""
  offsets = rng.uniform(-400.0, 400.0, (num_joints, 3)) * np.array([1.0, 2.0, 0.5])
  offsets[root] = 0.0
  centre = np.array([rng.uniform(-200, 200), rng.uniform(-100, 100), 4000.0])
  drift = np.cumsum(rng.normal(0.0, 5.0, (num_frames, 1, 3)), axis=0)
  return centre + offsets + drift


def project(points_mm: np.ndarray, intrinsics: readers.Intrinsics) -> np.ndarray:
  return points_mm[..., :2] / points_mm[..., 2:] * np.asarray(intrinsics.f) + np.asarray(
      intrinsics.c)


def _matlab_dataset(h5, key: str, matlab_array: np.ndarray) -> None:
  """Stores an array as MATLAB v7.3 does: column-major, i.e. reversed dims for HDF5."""
  h5.create_dataset(key, data=np.ascontiguousarray(np.transpose(matlab_array)))


def write_annot_data(path: pathlib.Path, pose_2d, pose_3d, univ_3d, valid, activity) -> None:
  """annot_data.mat of (N, 17, D) poses in the test order and (N,) valid / activity."""
  import h5py
  path.parent.mkdir(parents=True, exist_ok=True)
  with h5py.File(path, "w", userblock_size=512) as h5:
    # MATLAB arrays: annot2 2 x 17 x 1 x N, annot3 3 x 17 x 1 x N, valid_frame 1 x N.
    _matlab_dataset(h5, "annot2", np.transpose(pose_2d, (2, 1, 0))[:, :, None, :])
    _matlab_dataset(h5, "annot3", np.transpose(pose_3d, (2, 1, 0))[:, :, None, :])
    _matlab_dataset(h5, "univ_annot3", np.transpose(univ_3d, (2, 1, 0))[:, :, None, :])
    _matlab_dataset(h5, "valid_frame", np.asarray(valid, np.float64)[None, :])
    _matlab_dataset(h5, "activity_annotation", np.asarray(activity, np.float64)[:, None])
    _matlab_dataset(h5, "bb_crop", np.zeros((4, len(valid))))
  with open(path, "r+b") as f:
    # 116 bytes of text, 8 of subsystem offset, version 0x0200, endian indicator "IM".
    f.write(MATLAB_HEADER.ljust(116)[:116] + bytes(8) + b"\x00\x02IM")


def write_test_set(root: pathlib.Path, frames: dict[str, int], seed: int = 0,
                   images: bool = True) -> dict[str, dict[str, np.ndarray]]:
  """Writes root/mpi_inf_3dhp_test_set/TS<k>/ for each {sequence: num_frames}.

  Frame 1 of every sequence is invalid (valid_frame 0, activity 0). Images (valid frames
  only) are black with a white disc of radius 30 px on the projected pelvis.

  Returns: {sequence: {pose_2d, pose_3d, univ_3d (test order), valid, activity}}.
  """
  rng = np.random.default_rng(seed)
  written = {}
  for sequence, n in frames.items():
    intrinsics = readers.test_intrinsics(sequence)
    pose_3d = body_cam_mm(rng, n, 17, root=14)
    univ_3d = pose_3d[:, 14:15] + 0.9 * (pose_3d - pose_3d[:, 14:15])
    pose_2d = project(pose_3d, intrinsics)
    valid = np.ones(n, bool)
    valid[1] = False
    activity = rng.integers(1, 8, n)
    activity[1] = 0
    folder = root / readers.TEST_DIR / sequence
    write_annot_data(folder / "annot_data.mat", pose_2d, pose_3d, univ_3d, valid, activity)
    if images:
      (folder / "imageSequence").mkdir(parents=True, exist_ok=True)
      for j in np.flatnonzero(valid):
        image = PIL.Image.new("RGB", intrinsics.res)
        u, v = pose_2d[j, 14]
        PIL.ImageDraw.Draw(image).ellipse((u - 30, v - 30, u + 30, v + 30), fill=(255,) * 3)
        image.save(folder / "imageSequence" / readers.IMAGE_PATTERN.format(j + 1), quality=90)
    written[sequence] = {"pose_2d": pose_2d, "pose_3d": pose_3d, "univ_3d": univ_3d,
                         "valid": valid, "activity": activity}
  return written


def calibration_text(intrinsics: dict[int, readers.Intrinsics]) -> str:
  lines = ["Skeletool Camera Calibration File V1.0"]
  for index, cam in intrinsics.items():
    k = [cam.f[0], 0, cam.c[0], 0, 0, cam.f[1], cam.c[1], 0, 0, 0, 1, 0, 0, 0, 0, 1]
    lines += [f"name          {index}", "  sensor      10 10",
              f"  size        {cam.res[0]} {cam.res[1]}", "  animated    0",
              "  intrinsic   " + " ".join(f"{v:.6f}" for v in k),
              "  extrinsic   1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", "  radial      0"]
  return "\n".join(lines) + "\n"


def write_train_set(root: pathlib.Path, num_frames: int = 3, seed: int = 0
                    ) -> dict[tuple[str, str], dict]:
  """Writes root/S1..S8/Seq1,Seq2/{annot.mat, camera.calibration}, 14 cameras each.

  Returns: {(subject, sequence): {"annot2": [14 x (N, 28, 2)], "annot3": [...],
  "intrinsics": {camera: Intrinsics}}}.
  """
  import scipy.io
  rng = np.random.default_rng(seed)
  written = {}
  for subject in readers.TRAIN_SUBJECTS:
    for sequence in readers.TRAIN_SEQUENCES:
      folder = root / subject / sequence
      folder.mkdir(parents=True, exist_ok=True)
      intrinsics = {i: readers.Intrinsics(f=(1490.0 + i, 1495.0 + i), c=(1020.0 + i, 1040.0 - i),
                                           res=(2048, 2048), setting="training")
                    for i in range(readers.NUM_TRAIN_CAMERAS)}
      annot2, annot3, univ = [], [], []
      for i in range(readers.NUM_TRAIN_CAMERAS):
        pose_3d = body_cam_mm(rng, num_frames, 28, root=4)
        annot3.append(pose_3d)
        univ.append(pose_3d * 0.95)
        annot2.append(project(pose_3d, intrinsics[i]))

      def cell(arrays, dims):
        out = np.empty((readers.NUM_TRAIN_CAMERAS, 1), dtype=object)
        for i, a in enumerate(arrays):
          out[i, 0] = a.reshape(num_frames, 28 * dims)  # joint-major x1 y1 x2 y2 ...
        return out

      scipy.io.savemat(str(folder / "annot.mat"), {
          "annot2": cell(annot2, 2), "annot3": cell(annot3, 3), "univ_annot3": cell(univ, 3),
          "cameras": np.arange(readers.NUM_TRAIN_CAMERAS)[None],
          "frames": np.arange(num_frames)[:, None]})
      (folder / "camera.calibration").write_text(calibration_text(intrinsics))
      written[(subject, sequence)] = {"annot2": annot2, "annot3": annot3, "univ": univ,
                                      "intrinsics": intrinsics}
  return written
