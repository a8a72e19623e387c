"""Geometry in plain array code: rotations, cameras and projection, Procrustes alignment."""

from geopose_jax.geometry.cameras import (
    H36M_CAMERA_IDS,
    Camera,
    camera_to_world,
    h36m_subjects,
    image_coordinates,
    load_h36m_cameras,
    normalize_screen_coordinates,
    project_distorted,
    project_pinhole,
    project_with_intrinsics,
    relative_rotation,
    rotate_points,
    world_to_camera,
)
from geopose_jax.geometry.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    euler_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_multiply,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    random_azimuth_elevation,
    random_rotation,
    rotation_6d_to_matrix,
    rotation_about_axis,
)
from geopose_jax.geometry.procrustes import procrustes_align, similarity_transform
