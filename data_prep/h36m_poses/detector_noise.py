"""2D noise that looks like a keypoint detector's errors, for the `synthetic_noisy` poses.

A detector's error on Human3.6M is not white: it is larger at the extremities (wrists,
feet) than at the torso, it drifts smoothly over consecutive frames, it occasionally
jumps far off (an outlier), and it sometimes swaps left and right limbs. The model below
has each of these, with magnitudes of the order reported for CPN detections at Human3.6M's
1000-pixel resolution (a mean error of roughly 5-10 px).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from geopose_jax.skeleton import H36M_FLIP_PERMUTATION


@dataclasses.dataclass(frozen=True)
class DetectorNoise:
  """Parameters of the noise (pixels at Human3.6M's 1000 x 1000 resolution).

  Attributes:
    sigma_px: per-joint standard deviation of the smooth error, H36M-17 order.
    temporal_correlation: AR(1) coefficient of the error from one frame to the next.
    outlier_rate: probability that a (frame, joint) is an outlier.
    outlier_sigma_px: standard deviation of an outlier's extra displacement.
    swap_rate: probability that a frame's left and right joints are exchanged.
  """
  sigma_px: tuple[float, ...] = (3.0, 4.0, 5.0, 7.0, 4.0, 5.0, 7.0, 3.5, 3.5, 4.0, 5.0,
                                 4.5, 6.5, 8.5, 4.5, 6.5, 8.5)
  temporal_correlation: float = 0.9
  outlier_rate: float = 0.005
  outlier_sigma_px: float = 30.0
  swap_rate: float = 0.002


def add_detector_noise(pose_2d_px: np.ndarray, rng: np.random.Generator,
                       noise: DetectorNoise = DetectorNoise()) -> np.ndarray:
  """Adds detector-like noise to a clean 2D sequence.

  Args:
    pose_2d_px: (N, 17, 2) clean pixel coordinates of consecutive frames.
    rng: the source of randomness (seed it per sequence for reproducible datasets).
    noise: the noise parameters.

  Returns:
    (N, 17, 2) float32 noisy pixel coordinates.
  """
  pose_2d_px = np.asarray(pose_2d_px, np.float32)
  num_frames, num_joints, _ = pose_2d_px.shape
  sigma = np.asarray(noise.sigma_px, np.float32)[None, :, None]
  rho = noise.temporal_correlation
  # Stationary AR(1): each frame's marginal std equals sigma.
  innovations = rng.standard_normal((num_frames, num_joints, 2)).astype(np.float32)
  smooth = np.empty_like(innovations)
  smooth[0] = innovations[0]
  scale = np.sqrt(1.0 - rho * rho)
  for t in range(1, num_frames):
    smooth[t] = rho * smooth[t - 1] + scale * innovations[t]
  noisy = pose_2d_px + sigma * smooth
  outliers = rng.random((num_frames, num_joints)) < noise.outlier_rate
  jumps = rng.standard_normal((num_frames, num_joints, 2)).astype(np.float32)
  noisy += outliers[..., None] * noise.outlier_sigma_px * jumps
  swapped = rng.random(num_frames) < noise.swap_rate
  noisy[swapped] = noisy[swapped][:, list(H36M_FLIP_PERMUTATION)]
  return noisy.astype(np.float32)
