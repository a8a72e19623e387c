"""The pictures of the NVS family (nvs, nvs_pose): a few test frames with all their views,
drawn as a view grid and yaw sweeps (viz/nvs_sweep.py arranges them)."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import ml_collections
import numpy as np

from geopose_jax.viz import nvs_sweep

_EXAMPLES_CACHE: dict = {}


def load_examples(data_config: ml_collections.ConfigDict, num: int) -> dict[str, Any]:
  """`num` test frames spread over the split, with all their views (for pictures).

  Returns images, backgrounds `(N, V, H, W, 3)` uint8, R `(N, V, 3, 3)`, pose_3d_cam
  `(N, V, 17, 3)` mm, names [str]. Read once per process and data configuration.
  """
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  from geopose_jax.data import sources  # pylint: disable=g-import-not-at-top

  key = (sources.dataset_name(data_config), str(data_config.data_dir),
         sources.split_subjects(data_config, "test"), num)
  if key not in _EXAMPLES_CACHE:
    reader, index = multiview.open_multiview(data_config, "test")
    # Evenly spaced over the split ordered by (sequence, frame): different motions.
    picks = index.members[np.linspace(0, len(index) - 1, num).round().astype(int)]
    items = {"images": [], "backgrounds": [], "R": [], "pose_3d_cam": [], "names": []}
    for entry in picks:
      record = reader.parse(int(index.record[entry]))
      views = range(len(record["R"]))
      items["images"].append(np.stack([sources.decode_view(record["images"], v) for v in views]))
      items["backgrounds"].append(
          np.stack([sources.decode_view(record["backgrounds"], v) for v in views]))
      items["R"].append(np.asarray(record["R"], np.float32))
      items["pose_3d_cam"].append(np.asarray(record["pose_3d_cam"], np.float32))
      items["names"].append(f"{record['subject']} {record['sequence']} {int(record['frame'])}")
    _EXAMPLES_CACHE[key] = {k: (v if k == "names" else np.stack(v)) for k, v in items.items()}
  return _EXAMPLES_CACHE[key]


def draw(synthesizer, variables, config: ml_collections.ConfigDict, out_dir: pathlib.Path,
         step: int, predict_poses: Callable[[np.ndarray], np.ndarray] | None = None
         ) -> dict[str, np.ndarray]:
  """Writes the grid (input | real other views | synthesised ones) and yaw sweeps.

  `synthesizer` from `models.nvs_synthesis.view_synthesizer`, or None to draw only images
  and poses. `config.viz.num_examples=0` draws nothing.

  Returns {name: image} for TensorBoard.
  """
  if config.viz.num_examples <= 0:
    return {}
  examples = load_examples(config.data, config.viz.num_examples)
  synthesize_fn = None
  if synthesizer is not None:
    synthesize_fn = lambda images, backgrounds, rotations: np.asarray(  # noqa: E731
        synthesizer(variables, images, backgrounds, rotations))
  return nvs_sweep.draw_examples(examples, synthesize_fn, out_dir, step,
                                 num_sweeps=config.viz.sweeps,
                                 num_angles=config.viz.sweep_angles,
                                 predict_poses=predict_poses,
                                 interactive=config.viz.interactive)
