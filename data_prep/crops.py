"""Re-export of `geopose_jax.geometry.crops`, where the crop code lives so that prediction on
users' images crops exactly as the dataset builders do."""

from geopose_jax.geometry.crops import (  # noqa: F401
    crop_image, crop_intrinsics, crop_points, square_box, uncrop_points)
