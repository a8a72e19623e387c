"""Which code builds a dataset the first time a run asks for it.

geopose_jax reads datasets; it does not know how they are made. The package that makes them
(`data_prep`, outside geopose_jax) registers an `ensure_built(name, data_dir, **options)`
per dataset here when it is imported (`import data_prep` does it; launch.py, the tests and
the benchmarks import it), so a run builds a missing dataset on first use. Code that uses
geopose_jax without data_prep can still read every dataset that is already built.
"""

from __future__ import annotations

from typing import Callable

EnsureBuilt = Callable[..., object]
_BUILDERS: dict[str, EnsureBuilt] = {}


def register(dataset: str, ensure_built: EnsureBuilt) -> None:
  """`ensure_built(name, data_dir, **options) -> prepared tfds builder` for `dataset`."""
  _BUILDERS[dataset] = ensure_built


def builder_for(dataset: str) -> EnsureBuilt | None:
  """The registered build function of `dataset` (without '/config'), or None."""
  return _BUILDERS.get(dataset)


def registered() -> list[str]:
  return sorted(_BUILDERS)
