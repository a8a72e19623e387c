"""Builds a dataset by name: `python -m data_prep.build <name> [--data_dir D] [--manual_dir M]`.

Each dataset package registers here by name; its module exposes
`ensure_built(name, data_dir, *, manual_dir=None, **options) -> tfds builder`, which builds
unless a complete copy exists (TFDS writes into `incomplete.*` and renames at the end, so
an interrupted build is never mistaken for a finished one). A name may carry a builder
config: `synthetic_multiview/tiny`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pathlib
import shutil
import sys
import time

from geopose_jax.data import builders
from geopose_jax.data import integrity
from geopose_jax.errors import GeoposeError

# Dataset name -> module exposing `ensure_built`.
REGISTRY: dict[str, str] = {
    "synthetic_multiview": "data_prep.synthetic_multiview",
    "h36m_multiview": "data_prep.h36m_multiview",
    "h36m_poses": "data_prep.h36m_poses",
    "smpl_params": "data_prep.smpl_params",
    "mpi_inf_3dhp": "data_prep.mpi_inf_3dhp",
    "humaneva": "data_prep.humaneva",
}


def register(name: str, module: str) -> None:
  """Adds a dataset to the registry (module path exposing `ensure_built`) and tells
  geopose_jax how to build it on first use."""
  REGISTRY[name] = module
  builders.register(name, _lazy_ensure_built(module))


def _lazy_ensure_built(module: str):
  """`ensure_built` of `module`, imported when first called (keeps `import data_prep` light)."""

  def ensure_built(name, data_dir, **options):
    return importlib.import_module(module).ensure_built(name, data_dir, **options)

  return ensure_built


for _name, _module in list(REGISTRY.items()):
  register(_name, _module)


def dataset_module(name: str):
  """The module that builds `name` (with or without '/config')."""
  dataset = str(name).partition("/")[0]
  if dataset not in REGISTRY:
    raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(REGISTRY)}")
  return importlib.import_module(REGISTRY[dataset])


def ensure_built(name: str, data_dir: str | os.PathLike | None = None, rebuild: bool = False,
                 **options):
  """Builds `name` into `data_dir` (default configs.common.default_data_dir()) if absent.

  Returns the prepared TFDS builder, checked whole (geopose_jax.data.integrity): a damaged
  copy raises DatasetError, or with `rebuild=True` is deleted and built again. A failed
  build leaves no empty folders behind. `options` (e.g. manual_dir) go to the dataset's
  own `ensure_built`.
  """
  if data_dir is None:
    from configs import common  # pylint: disable=g-import-not-at-top
    data_dir = common.default_data_dir()
  module = dataset_module(name)
  with _no_empty_folders_on_failure(pathlib.Path(data_dir)):
    builder = module.ensure_built(name, os.fspath(data_dir), **options)
    if integrity.dataset_problems(builder.data_dir) and rebuild:
      print(f"Rebuilding {name}: {'; '.join(integrity.dataset_problems(builder.data_dir))}",
            flush=True)
      shutil.rmtree(os.fspath(builder.data_dir))
      builder = module.ensure_built(name, os.fspath(data_dir), **options)
    integrity.check_dataset(builder.data_dir, name)
  return builder


@contextlib.contextmanager
def _no_empty_folders_on_failure(data_dir: pathlib.Path):
  """On an exception, removes the folders the attempt created that hold no file of a
  dataset (empty ones, and new dataset folders holding only TFDS's .config)."""
  before = {p for p in data_dir.rglob("*") if p.is_dir()} if data_dir.is_dir() else set()
  existed = data_dir.is_dir()
  try:
    yield
  except BaseException:
    if data_dir.is_dir():
      new = sorted((p for p in data_dir.rglob("*") if p.is_dir() and p not in before),
                   key=lambda p: len(p.parts), reverse=True)
      for folder in new:
        if folder.name == ".config" and folder.parent in new:
          shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
          folder.rmdir()  # Only succeeds when empty.
      if not existed:
        with contextlib.suppress(OSError):
          data_dir.rmdir()
    raise


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m data_prep.build", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", help=f"dataset[/config], one of {sorted(REGISTRY)}")
  parser.add_argument("--data_dir", default=None,
                      help="where datasets are built (default: $GEOPOSE_DATA_DIR or "
                      "~/.local/share/geopose_jax/datasets)")
  parser.add_argument("--manual_dir", default=None,
                      help="folder with licence-gated source files (raw Human3.6M, npz)")
  parser.add_argument("--npz_3d", default=None,
                      help="h36m_poses only: a VideoPose3D-format 3D file (data_3d_h36m.npz)")
  parser.add_argument("--npz_2d", default=None,
                      help="h36m_poses only: a VideoPose3D-format 2D file (gt, cpn, detectron, ...)")
  parser.add_argument("--rebuild", action="store_true",
                      help="delete a damaged copy (missing or truncated files) and build again")
  args = parser.parse_args(argv)
  options = {"manual_dir": args.manual_dir} if args.manual_dir else {}
  if args.rebuild:
    options["rebuild"] = True
  if args.npz_3d or args.npz_2d:
    if not str(args.name).startswith("h36m_poses"):
      parser.error("--npz_3d/--npz_2d are for h36m_poses")
    options.update(npz_3d=args.npz_3d or "", npz_2d=args.npz_2d or "")
  start = time.time()
  try:
    builder = ensure_built(args.name, args.data_dir, **options)
  except (GeoposeError, ValueError, FileNotFoundError, ImportError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  splits = {name: split.num_examples for name, split in builder.info.splits.items()}
  size = sum(split.num_bytes for split in builder.info.splits.values())
  print(f"{args.name}: {builder.data_dir}\n  examples {splits}, {size / 2**20:.1f} MiB, "
        f"{time.time() - start:.0f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
