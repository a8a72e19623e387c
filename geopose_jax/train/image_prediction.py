"""`--mode=predict` on images: a video or a folder of frames with a person box per frame ->
3D poses (for smpl also the body), BVH, MP4, GIF.

    python launch.py --config=configs/nvs_pose.py:demo --workdir=runs/nvs_pose_demo \
        --mode=predict --config.predict.input=video.mp4 --config.predict.boxes=det.json \
        --config.predict.output=out

After train/prediction.py's request checks, in order, each step checked before the next so
that a mistake stops with one line and leaves nothing in the output folder:
  1. the frames (`images.open_frames`): their size and count, only the first decoded;
  2. the boxes (`boxes.load_boxes`): one per frame, inside the image, short gaps filled;
  3. the weights (`prediction.load_weights`);
  4. one pass over the frames: each cut to the task's square crop with the dataset
     builders' crop code (`images.person_crops`) and predicted `eval.batch_size` crops at a
     time (`prediction.predict_in_chunks`): memory holds one batch of frames, never the
     video;
  5. `export.write_sequence` in a temporary folder renamed to `predict.output`; its MP4 and
     GIF decode the frames a second time, one at a time, drawn with the box beside the 3D
     skeleton.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

from absl import logging
import ml_collections
import numpy as np

from geopose_jax import boxes as boxes_lib
from geopose_jax import export
from geopose_jax import images
from geopose_jax.train import prediction
from geopose_jax.train.task import Runtime, Task

# A folder of frames says nothing about its frame rate.
DEFAULT_FPS = 25.0


def sequence_name(path: str) -> str:
  """The output folder's name for an input: the video's file stem or the folder's name."""
  path = os.path.normpath(path)
  base = os.path.basename(path)
  stem = base if os.path.isdir(path) else os.path.splitext(base)[0]
  return stem or "sequence"


def read_frames_and_boxes(config: ml_collections.ConfigDict
                          ) -> tuple[images.FrameSource, np.ndarray, np.ndarray]:
  """(frames, (N, 4) boxes, (N,) bool box filled in a gap) of `predict.input` / `.boxes`."""
  p = config.predict
  source = images.open_frames(os.path.expanduser(p.input))
  boxes, filled = boxes_lib.load_boxes(
      os.path.expanduser(p.boxes), source.num_frames, source.width, source.height,
      format=p.format or None, layout=p.layout or None,
      track_id=None if int(p.track_id) < 0 else int(p.track_id),
      min_confidence=float(p.min_confidence), max_gap=int(p.max_box_gap))
  return source, boxes, filled


def crop_batches(source: images.FrameSource, boxes: np.ndarray, size: int,
                 progress: bool = False) -> Callable[[np.ndarray], np.ndarray]:
  """make_batch for `predict_in_chunks`: (b,) consecutive frame indices -> (b, size, size, 3)
  uint8 crops, decoded and cut as they are asked for (the indices must come in order)."""
  stream = images.person_crops(source, boxes, size, show_progress=progress)
  position = [0]

  def make_batch(indices: np.ndarray) -> np.ndarray:
    if len(indices) == 0 or int(indices[0]) != position[0]:
      raise ValueError(f"crops are streamed in order: expected frame {position[0]}, asked "
                       f"for {indices[:1].tolist()}")
    position[0] += len(indices)
    return np.stack([next(stream)[0] for _ in indices])

  return make_batch


def image_metadata(config: ml_collections.ConfigDict, task: Task, source: images.FrameSource,
                   filled: np.ndarray, fps: float, weights: str) -> dict[str, Any]:
  """What poses_3d.json says about where its numbers came from."""
  return {
      "task": config.task,
      "weights": weights,
      "input": source.path,
      "boxes": os.path.expanduser(config.predict.boxes),
      "image_size": [int(source.width), int(source.height)],
      "crop": f"{task.predict_image_size} x {task.predict_image_size} px square around each "
              f"box's centre, side = the box's longer side x {images.BOX_SCALE:g}",
      "filled_boxes": int(np.sum(filled)),
      "fps": float(fps),
      **dict(task.predict_metadata),
  }


def predict(config: ml_collections.ConfigDict, task: Task, runtime: Runtime
            ) -> dict[str, str]:
  """Runs `--mode=predict` on images (see the module docstring); returns {name: folder}."""
  prediction.check_request(config, task)
  prediction.check_run_task(config, runtime.workdir)
  source, boxes, filled = read_frames_and_boxes(config)
  state, weights = prediction.load_weights(config, task, runtime)
  p = config.predict
  is_main = runtime.process_index == 0
  show = bool(config.train.progress_bar) and is_main
  size = int(task.predict_image_size)
  fps = float(p.fps) or source.fps or DEFAULT_FPS
  name = sequence_name(source.path)
  num_frames = len(boxes)
  out = prediction.predict_in_chunks(
      lambda crops: task.predict_images(state, crops), num_frames,
      crop_batches(source, boxes, size), batch_size=int(config.eval.batch_size),
      num_devices=runtime.mesh.devices.size, progress=show, desc=f"predict {name}")
  out = dict(out)
  poses = np.asarray(out.pop("pose_3d_mm"), np.float32)
  if poses.shape != (num_frames, 17, 3) or not np.isfinite(poses).all():
    raise FloatingPointError(
        f"task {config.task!r} predicted {poses.shape} poses for {num_frames} frames of "
        f"{name!r} (finite: {bool(np.isfinite(poses).all())})")
  output = os.path.abspath(os.path.expanduser(p.output))
  folders: dict[str, str] = {}
  # Every process predicts (a model sharded over hosts needs them all); the main one writes.
  staged = export.staged_output(output) if is_main else contextlib.nullcontext()
  with staged as staging:
    if is_main:
      extras = {"boxes_xywh": boxes.astype(np.float32), "box_filled": filled,
                "crop_boxes": images.square_crop_box(boxes).astype(np.float32), **out}
      export.write_sequence(
          staging, name, np.arange(num_frames), poses, None, None,
          (source.width, source.height), fps=fps, extras=extras, images=source.frames(),
          video=bool(p.video), gif=bool(p.gif), show_progress=show,
          metadata=image_metadata(config, task, source, filled, fps, weights),
          boxes_xywh=boxes)
      folders[name] = os.path.join(output, name)
      logging.info("predict: %s, %d frames", name, num_frames)
  if is_main:
    print(f"Wrote {len(folders)} sequence(s) to {output} (weights: {weights})", flush=True)
  return folders
