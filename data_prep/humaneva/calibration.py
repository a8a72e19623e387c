"""HumanEva-I camera extrinsics of the three colour cameras C1, C2, C3 (640 x 480).

The values of the HumanEva-I release's calibration as VideoPose3D transcribes them
(common/humaneva_dataset.py of facebookresearch/VideoPose3D): per subject, the camera's
orientation as a camera-to-world quaternion (w, x, y, z) and its centre in world mm, the
convention of the Human3.6M cameras (X_cam = R^T (X_world - centre), R the quaternion's
matrix). S3 shares S1's calibration in that table. VideoPose3D's HumanEva files carry the
2D poses themselves, so no intrinsics are needed here.
"""

from __future__ import annotations

import numpy as np

from geopose_jax.errors import InputError
from geopose_jax.geometry.rotations import quaternion_to_matrix

CAMERA_IDS = ("C1", "C2", "C3")
RESOLUTION = (640, 480)
_S1 = (((0.424207, -0.4983646, -0.5802981, 0.4847012), (4062.227, 663.2477, 1528.397)),
       ((0.6503354, -0.7481602, -0.0919284, 0.0941766), (844.8131, -3805.2092, 1504.9929)),
       ((0.0664734, -0.0690535, 0.7416416, -0.6639132), (-797.67377, 3916.3174, 1433.6602)))
_S2 = (((0.4214752, -0.4961493, -0.5838273, 0.4851187), (4112.9121, 626.4929, 1545.2988)),
       ((0.6501393, -0.7476588, -0.0954617, 0.0959808), (923.5740, -3877.9243, 1504.5518)),
       ((0.0699353, -0.0712403, 0.7421637, -0.662742), (-781.4915, 3838.8853, 1444.9929)))
EXTRINSICS = {"S1": _S1, "S2": _S2, "S3": _S1}


def cameras(subject: str) -> tuple[np.ndarray, np.ndarray]:
  """(R (3, 3, 3) world->camera, centres (3, 3) world mm) of C1, C2, C3 for `subject`."""
  if subject not in EXTRINSICS:
    raise InputError(f"no HumanEva-I calibration for subject {subject!r}; known: "
                     f"{sorted(EXTRINSICS)}")
  quaternions = np.asarray([q for q, _ in EXTRINSICS[subject]], np.float64)
  camera_to_world = np.asarray(quaternion_to_matrix(quaternions), np.float64)
  return (np.swapaxes(camera_to_world, -1, -2),
          np.asarray([c for _, c in EXTRINSICS[subject]], np.float64))
