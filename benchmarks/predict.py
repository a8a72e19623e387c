r"""Speed of the prediction outputs: MP4 rendering frames/s (and BVH export frames/s).

    python benchmarks/predict.py                        # 3,000 frames, 360-px panels
    python benchmarks/predict.py --frames=500 --out=predict_bench.json

The poses are the synthetic test clips (geopose_jax.data.motion) repeated to --frames,
projected through a Human3.6M camera for the 2D panel; the render is the one --mode=predict
writes (2D skeleton | 3D skeleton, H.264 through PyAV). Target: a 3,000-frame sequence's MP4
in at most 120 s on 2 CPU cores. JSON goes to stdout and to --out.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import report  # noqa: E402  (benchmarks/report.py, beside this script)

from geopose_jax.data import motion  # noqa: E402
from geopose_jax.export import bvh_writer, render  # noqa: E402
from geopose_jax.geometry import cameras  # noqa: E402


def _poses(num_frames: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
  sequences = motion.subject_sequences("S9")
  world = np.concatenate([s.poses_world for s in sequences]).astype(np.float64)
  world = np.resize(world, (num_frames, 17, 3))
  camera = cameras.load_h36m_cameras("S9")[0]
  cam = np.asarray(cameras.world_to_camera(world, camera))
  pixels = np.asarray(cameras.project_distorted(cam, camera))
  return cam, pixels, tuple(int(v) for v in np.asarray(camera.res))


def run(num_frames: int = 3000, panel: int = 360, fps: float = 50.0) -> dict:
  cam, pixels, size = _poses(num_frames)
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as tmp:
    start, cpu = time.perf_counter(), time.process_time()
    written = render.write_mp4(os.path.join(tmp, "render.mp4"),
                               render.render_frames(cam, pixels, size, panel=panel), fps,
                               num_frames, show_progress=False)
    mp4_s, mp4_cpu = time.perf_counter() - start, time.process_time() - cpu
    mp4_bytes = os.path.getsize(os.path.join(tmp, "render.mp4"))
    start = time.perf_counter()
    bvh_writer.write_bvh(os.path.join(tmp, "motion.bvh"), cam, fps)
    bvh_s = time.perf_counter() - start
  return {
      "task": "predict_outputs",
      **report.device_facts(),
      "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "frames": written,
      "panel_px": panel,
      "mp4_s": round(mp4_s, 2),
      "mp4_process_cpu_s": round(mp4_cpu, 2),
      "mp4_frames_per_s": round(written / mp4_s, 1),
      "mp4_bytes": mp4_bytes,
      "mp4_target_s_for_3000_frames": 120,
      "mp4_s_per_3000_frames": round(3000 * mp4_s / written, 1),
      "bvh_s": round(bvh_s, 3),
      "bvh_frames_per_s": round(num_frames / bvh_s, 1),
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--frames", type=int, default=3000)
  parser.add_argument("--panel", type=int, default=360, help="render height in pixels")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  if args.frames < 1 or args.panel < 16:
    parser.error("--frames must be positive and --panel at least 16")
  return report.emit(run(args.frames, args.panel), args.out)


if __name__ == "__main__":
  main()
