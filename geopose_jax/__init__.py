"""geopose_jax: 3D human pose with little or no 3D supervision, in JAX."""

__version__ = "0.1.0"
