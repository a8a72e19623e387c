r"""Throughput of the input pipelines: examples/s that a loader delivers to the host.

    python benchmarks/data_pipeline.py                        # NVS pairs, synthetic_multiview
    python benchmarks/data_pipeline.py --workers=0,1,2 --batches=30
    python benchmarks/data_pipeline.py --loader=temporal_windows --batch_size=1024 --flip
    python benchmarks/data_pipeline.py --name=synthetic_multiview/tiny --data_dir=/tmp/d

Builds the dataset on first use (as training does). For each worker count, the loader is
created, its first batch is timed separately (start-up: worker processes, index scan),
then `--batches` batches are drawn and counted. Nothing else runs, so this is the most the
loader can feed; in training it shares the CPU with the train step. JSON goes to stdout and
to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


from configs import common  # noqa: E402
import data_prep  # noqa: E402,F401  (registers the dataset builders)
from geopose_jax.data import multiview  # noqa: E402
from geopose_jax.data import options as data_options  # noqa: E402
from geopose_jax.data import poses  # noqa: E402
from geopose_jax.data import windows  # noqa: E402

LOADERS = {
    "nvs_pairs": (multiview.nvs_pairs, "synthetic_multiview"),
    "single_views": (multiview.single_views, "synthetic_multiview"),
    "multiview_samples": (multiview.multiview_samples, "synthetic_multiview"),
    "lifter_frames": (poses.lifter_frames, "h36m_poses"),
    "temporal_windows": (windows.temporal_windows, "h36m_poses"),
}


def measure(loader_fn, data_config, batch_size: int, num_batches: int, **kwargs) -> dict:
  start = time.perf_counter()
  iterator = iter(loader_fn(data_config, split="train", global_batch_size=batch_size, seed=0,
                            **kwargs))
  next(iterator)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  seconds = time.perf_counter() - start
  return {"num_workers": int(data_config.num_workers), "first_batch_s": round(first, 3),
          "batches_per_s": round(num_batches / seconds, 3),
          "examples_per_s": round(num_batches * batch_size / seconds, 1)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--loader", default="nvs_pairs", choices=sorted(LOADERS))
  parser.add_argument("--name", default="", help="dataset[/config] (default: the loader's)")
  parser.add_argument("--data_dir", default=common.default_data_dir())
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--workers", default="0,2", help="comma-separated worker counts")
  parser.add_argument("--prefetch", type=int, default=2)
  parser.add_argument("--receptive_field", type=int, default=243)
  parser.add_argument("--flip", action="store_true", help="temporal_windows: flip augmentation")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  loader_fn, default_name = LOADERS[args.loader]
  results = []
  for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
    data_config = data_options.data_config(
        name=args.name or default_name, data_dir=args.data_dir, num_workers=workers,
        prefetch=args.prefetch)
    kwargs = {}
    if args.loader == "temporal_windows":
      kwargs = {"receptive_field": args.receptive_field, "flip": bool(args.flip)}
    results.append(measure(loader_fn, data_config, args.batch_size, args.batches, **kwargs))
  report = {"benchmark": "data_pipeline", "loader": args.loader,
            "dataset": args.name or default_name, "batch_size": args.batch_size,
            "batches": args.batches, "flip": bool(args.flip), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "results": results}
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
