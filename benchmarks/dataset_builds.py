r"""Build time and size of the motion-driven datasets (the synthetic defaults).

    python benchmarks/dataset_builds.py --dataset=h36m_poses/synthetic --out=h36m.json
    python benchmarks/dataset_builds.py --dataset=synthetic_multiview --workers=2
    python benchmarks/dataset_builds.py --dataset=synthetic_multiview/large --workers=16

Builds the dataset from scratch into a fresh temporary folder (or --data_dir, which must
not hold it yet) and reports the wall time, the CPU time of this process, the records and
frames per split, the bytes written, and the machine's load before and after (the machine
may be shared: the load says how much else ran). Targets: synthetic_multiview default
<= 5 min on 2 cores; h36m_poses synthetic >= 500k training frames (4 cameras) in <= 2 min.
JSON goes to stdout and to --out.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import report  # noqa: E402  (benchmarks/report.py, beside this script)
from data_prep import build  # noqa: E402

TARGET_S = {"h36m_poses": 120.0, "synthetic_multiview": 300.0}


def _folder_bytes(path: str) -> int:
  return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def measure(dataset: str, data_dir: str, workers: int | None) -> dict:
  options = {}
  if dataset.startswith("synthetic_multiview") and workers is not None:
    options["num_workers"] = workers
  load_before = os.getloadavg()
  start, cpu_start = time.perf_counter(), time.process_time()
  builder = build.ensure_built(dataset, data_dir, **options)
  seconds = time.perf_counter() - start
  cpu = time.process_time() - cpu_start
  splits = {}
  for name, split in builder.info.splits.items():
    splits[name] = {"records": int(split.num_examples)}
  if dataset.startswith("h36m_poses"):
    from geopose_jax.data import sources  # noqa: E402 (only this case reads records back)
    for name in splits:
      reader = sources.RecordReader(os.fspath(builder.data_dir), name)
      splits[name]["frames"] = int(sum(int(reader.parse(i)["num_frames"])
                                       for i in range(len(reader))))
  target = TARGET_S.get(dataset.split("/")[0])
  return {"dataset": dataset, "version": str(builder.version), "wall_s": round(seconds, 1),
          "process_cpu_s": round(cpu, 1), "target_s": target,
          "within_target": bool(target is None or seconds <= target), "splits": splits,
          "bytes": _folder_bytes(os.fspath(builder.data_dir)), "num_workers": workers,
          "load_average_before": [round(v, 2) for v in load_before],
          "load_average_after": [round(v, 2) for v in os.getloadavg()]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="h36m_poses/synthetic")
  parser.add_argument("--data_dir", default="", help="default: a fresh temporary folder")
  parser.add_argument("--workers", type=int, default=None,
                      help="synthetic_multiview render processes (default: min(2, CPUs))")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory(prefix="geopose_build_bench_") as scratch:
    result = measure(args.dataset, args.data_dir or scratch, args.workers)
  result.update({"benchmark": "dataset_builds", "cpu_count": os.cpu_count(),
                 "machine": platform.machine()})
  report.emit(result, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
