r"""Speed of --mode=predict: 2D -> 3D frames/s (RIE stage 3, the lifter) and the outputs
(MP4 rendering, BVH export) frames/s.

    python benchmarks/predict.py                        # 3,000 frames, 360-px panels
    python benchmarks/predict.py --frames=500 --out=predict_bench.json
    python benchmarks/predict.py --only=lift            # or --only=render

The poses are the synthetic test clips (geopose_jax.data.motion_plan) repeated to --frames,
projected through a Human3.6M camera. Lifting goes through the production path: the task
built from its paper-size config (`configs/rie.py` stage 3: receptive field 243, test-time
flip average, windows 1024 at a time; `configs/lifter.py`), its `Task.predict` on a
`KeypointSequence`, as --mode=predict calls it (the weights are freshly initialised: the
speed does not depend on them). `cold_s` includes compilation (the first sequence of a
run), `warm_s` is a second sequence of the same length. The render is the one
--mode=predict writes (2D skeleton | 3D skeleton, H.264 through PyAV). Targets on 2 CPU
cores: a 3,000-frame sequence lifted by RIE stage 3 in at most 60 s, its MP4 in at most
120 s. JSON goes to stdout and to --out.
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

from geopose_jax import host_memory  # noqa: E402

host_memory.keep_freed_memory()  # as launch.py does, before the first large allocation

import report  # noqa: E402  (benchmarks/report.py, beside this script)

from configs import lifter as lifter_config  # noqa: E402
from configs import rie as rie_config  # noqa: E402
from geopose_jax.data import motion_plan  # noqa: E402
from geopose_jax.export import bvh_writer, render  # noqa: E402
from geopose_jax.geometry import cameras  # noqa: E402
from geopose_jax.keypoints import sequence as keypoint_sequence  # noqa: E402
from geopose_jax.train import loop  # noqa: E402
from geopose_jax.train import mesh as mesh_lib  # noqa: E402


def _poses(num_frames: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
  sequences = motion_plan.subject_sequences("S9")
  world = np.concatenate([s.poses_world for s in sequences]).astype(np.float64)
  world = np.resize(world, (num_frames, 17, 3))
  camera = cameras.load_h36m_cameras("S9")[0]
  cam = np.asarray(cameras.world_to_camera(world, camera))
  pixels = np.asarray(cameras.project_distorted(cam, camera))
  return cam, pixels, tuple(int(v) for v in np.asarray(camera.res))


def _keypoints(pixels: np.ndarray, size: tuple[int, int]) -> keypoint_sequence.KeypointSequence:
  return keypoint_sequence.make_sequence(
      "benchmark", np.arange(len(pixels)), pixels, np.ones(pixels.shape[:2]), "h36m17",
      size[0], size[1], origin="benchmarks/predict.py")


def lift_speed(config, keypoints: keypoint_sequence.KeypointSequence) -> dict:
  """Seconds of `Task.predict` on `keypoints`: cold (with compilation), then warm."""
  import jax  # pylint: disable=g-import-not-at-top
  config.train.progress_bar = False
  with tempfile.TemporaryDirectory() as tmp:
    runtime = mesh_lib.make_runtime(tmp)
    loop.resolve_config(config)
    task = loop.build_task(config, runtime)
    state = jax.jit(task.init, out_shardings=runtime.replicated)(jax.random.key(0))
    times = []
    for _ in range(2):
      start = time.perf_counter()
      out = task.predict(state, keypoints)
      times.append(time.perf_counter() - start)
  n = keypoints.num_frames
  assert out["pose_3d_mm"].shape == (n, 17, 3)
  return {"cold_s": round(times[0], 2), "warm_s": round(times[1], 2),
          "warm_frames_per_s": round(n / times[1], 1),
          "cold_frames_per_s": round(n / times[0], 1)}


def run_lift(num_frames: int = 3000) -> dict:
  _, pixels, size = _poses(num_frames)
  keypoints = _keypoints(pixels, size)
  rie = rie_config.get_config()
  rie.stage = 3
  load_before = os.getloadavg()[0]
  rie_result = lift_speed(rie, keypoints)
  lifter_result = lift_speed(lifter_config.get_config(), keypoints)
  return {
      "load_average_1min_lift": [round(load_before, 2), round(os.getloadavg()[0], 2)],
      "lift_frames": num_frames,
      "rie_stage3": {"receptive_field": 243, "test_time_flip": bool(rie.eval.test_time_flip),
                     "batch_windows": int(rie.eval.batch_size), **rie_result},
      "rie_target_s_for_3000_frames": 60,
      "rie_warm_s_per_3000_frames": round(3000 * rie_result["warm_s"] / num_frames, 1),
      "lifter": {"features": 1024, "batch": 1024, **lifter_result},
  }


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
      "load_average_1min_render": [round(load_before, 2), round(os.getloadavg()[0], 2)],
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
  parser.add_argument("--only", choices=("lift", "render"), default=None,
                      help="measure only lifting or only the outputs")
  args = parser.parse_args(argv)
  if args.frames < 1 or args.panel < 16:
    parser.error("--frames must be positive and --panel at least 16")
  result = {"task": "predict", **report.device_facts()}
  if args.only != "render":
    result.update(run_lift(args.frames))
  if args.only != "lift":
    result.update({k: v for k, v in run(args.frames, args.panel).items()
                   if k not in ("task", *report.device_facts())})
  return report.emit(result, args.out)


if __name__ == "__main__":
  main()
