"""Dataset builders. Importing this package registers every builder with geopose_jax, so a
run builds a missing dataset on first use (see geopose_jax/data/builders.py)."""

from data_prep import build as _build  # noqa: F401  (registers the builders)
