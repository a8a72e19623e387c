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

    python benchmarks/dataset_builds.py --dataset=synthetic_multiview --sample=60

instead renders 60 of the config's planned frames (spread over the plan) in this process
and reports the CPU seconds per record and the build time they project for 2 cores
(records x CPU s / 2, plus the measured planning time): a figure that other jobs on a
shared machine disturb much less than the wall time of a build.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

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


def sample_render(dataset: str, count: int) -> dict:
  """CPU seconds per rendered record of a synthetic_multiview config, from `count` frames."""
  from data_prep.synthetic_multiview import features as features_lib  # noqa: E402
  from data_prep.synthetic_multiview import records  # noqa: E402
  from data_prep.synthetic_multiview import synthetic_multiview_dataset_builder as lib  # noqa
  name = dataset.partition("/")[2] or lib.Builder.DEFAULT_CONFIG_NAME
  config = {c.name: c for c in lib.Builder.BUILDER_CONFIGS}[name]
  cpu_start = time.process_time()
  frames = records.plan_frames(config.subjects, frame_step=config.frame_step,
                               max_frames_per_subject=config.max_frames_per_subject,
                               max_sequences_per_subject=config.max_sequences_per_subject)
  plan_cpu = time.process_time() - cpu_start
  chosen = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
  options = records.RenderOptions(supersample=config.supersample, room_scale=config.room_scale)
  records.render_encoded(chosen[0], options, features_lib.encode_record)  # rooms, caches
  cpu_start = time.process_time()
  for frame in chosen:
    records.render_encoded(frame, options, features_lib.encode_record)
  per_record = (time.process_time() - cpu_start) / len(chosen)
  return {"dataset": dataset, "records": len(frames), "sampled": len(chosen),
          "plan_cpu_s": round(plan_cpu, 2), "render_cpu_s_per_record": round(per_record, 4),
          "projected_2_core_build_s": round(plan_cpu + len(frames) * per_record / 2, 1),
          "target_s": TARGET_S["synthetic_multiview"], "load_average": [
              round(v, 2) for v in os.getloadavg()]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="h36m_poses/synthetic")
  parser.add_argument("--data_dir", default="", help="default: a fresh temporary folder")
  parser.add_argument("--workers", type=int, default=None,
                      help="synthetic_multiview render processes (default: min(2, CPUs))")
  parser.add_argument("--sample", type=int, default=0,
                      help="synthetic_multiview: render this many frames in-process only")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  if args.sample:
    result = sample_render(args.dataset, args.sample)
    result.update({"benchmark": "dataset_builds", "mode": "sample",
                   "cpu_count": os.cpu_count(), "machine": platform.machine()})
    report.emit(result, args.out)
    return 0
  with tempfile.TemporaryDirectory(prefix="geopose_build_bench_") as scratch:
    result = measure(args.dataset, args.data_dir or scratch, args.workers)
  result.update({"benchmark": "dataset_builds", "cpu_count": os.cpu_count(),
                 "machine": platform.machine()})
  report.emit(result, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
