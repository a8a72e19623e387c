r"""N-MPJPE vs amount of labelled data: NVS pre-training vs a supervised encoder (Fig. 4a).

For every label fraction, trains the pose head on the frozen NVS encoder of a stage-1 run
(`nvs_pose`) and the same encoder + head end to end from scratch (`nvs_pose:supervised`) on
the same labelled frames, evaluates both on the test subjects, and writes
<out>/label_sweep.{json,md,png}.

  python scripts/label_sweep.py --nvs_workdir=runs/nvs/<run> --out=runs/label_sweep \
      --fractions=0.05,0.2,1.0 --variant=demo --steps=400
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

flags.DEFINE_string("nvs_workdir", None, "Workdir of a finished `nvs` run (stage 1).")
flags.DEFINE_string("out", "runs/label_sweep", "Output folder (one sub-run per point).")
flags.DEFINE_list("fractions", ["0.05", "0.2", "1.0"], "Fractions of the labelled frames.")
flags.DEFINE_list("label_subjects", ["S1"], "Subjects whose labels are used.")
flags.DEFINE_string("variant", "demo", "configs/nvs_pose.py variant ('' or 'demo').")
flags.DEFINE_integer("steps", 0, "Training steps per run (0: the variant's default).")
flags.DEFINE_integer("batch_size", 0, "Batch size (0: the variant's default).")
flags.DEFINE_string("data_dir", "", "Dataset folder (default: the config's).")
flags.mark_flags_as_required(["nvs_workdir"])
FLAGS = flags.FLAGS

METHODS = (("nvs", "NVS pre-trained (frozen encoder)"), ("supervised", "supervised, no NVS"))
# N-MPJPE as Rhodin et al. report it (the scale fit, averaged over the non-root joints).
METRICS = ("n_mpjpe_rhodin", "mpjpe", "pa_mpjpe")


def point_config(method: str, fraction: float):
  from configs import nvs_pose as nvs_pose_config  # pylint: disable=g-import-not-at-top
  arg = ",".join(a for a in (FLAGS.variant, "supervised" if method == "supervised" else "") if a)
  config = nvs_pose_config.get_config(arg)
  config.data.label_fraction = fraction
  config.data.label_subjects = tuple(FLAGS.label_subjects)
  if FLAGS.data_dir:
    config.data.data_dir = FLAGS.data_dir
  if FLAGS.steps:
    config.train.steps = FLAGS.steps
    config.train.checkpoint_every = FLAGS.steps
  if FLAGS.batch_size:
    config.train.batch_size = FLAGS.batch_size
  config.train.eval_every = 0
  config.viz.num_examples = 0  # Tables only; the single runs draw their own pictures.
  if method == "nvs":
    config.init_from = FLAGS.nvs_workdir
  return config


def labelled_images(config) -> int:
  """How many labelled images (views) a configuration trains on."""
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top
  _, index = multiview.open_multiview(config.data, "train")
  entries = multiview.label_subset(index, tuple(config.data.label_subjects),
                                   float(config.data.label_fraction),
                                   int(config.data.label_seed))
  return 4 * len(entries)


def markdown(points: list[dict]) -> str:
  lines = ["| label fraction | labelled images | method | N-MPJPE | MPJPE | PA-MPJPE |",
           "|---:|---:|---|---:|---:|---:|"]
  for p in points:
    lines.append(f"| {p['fraction']:g} | {p['labelled_images']} | {p['method']} | "
                 f"{p['n_mpjpe_rhodin']:.1f} | {p['mpjpe']:.1f} | {p['pa_mpjpe']:.1f} |")
  return "\n".join(lines) + "\n"


def plot(points: list[dict], path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from geopose_jax.viz import image_grid  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(5, 3.6), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(111)
  for method, label in METHODS:
    mine = sorted((p["labelled_images"], p["n_mpjpe_rhodin"]) for p in points
                  if p["method"] == method)
    if mine:
      ax.plot(*zip(*mine), marker="o", label=label)
  ax.set_xscale("log")
  ax.set_xlabel("labelled training images")
  ax.set_ylabel("N-MPJPE (mm), test subjects")
  ax.grid(True, alpha=0.3)
  ax.legend()
  fig.tight_layout()
  image_grid.save_png(path, image_grid.figure_to_image(fig))


def main(argv):
  del argv
  import data_prep  # noqa: F401  pylint: disable=g-import-not-at-top  (registers builders)
  from geopose_jax.train import loop  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  points = []
  for fraction in sorted(float(f) for f in FLAGS.fractions):
    for method, _ in METHODS:
      config = point_config(method, fraction)
      workdir = out / f"{method}_labels{fraction:g}"
      print(f"== {method}, label fraction {fraction:g} -> {workdir}", flush=True)
      results = loop.run(config, workdir)["test"]
      points.append({"method": method, "fraction": fraction,
                     "labelled_images": labelled_images(config),
                     **{m: float(results[m]) for m in METRICS}})
  tmp = out / "label_sweep.json.tmp"
  tmp.write_text(json.dumps(points, indent=2))
  os.replace(tmp, out / "label_sweep.json")
  (out / "label_sweep.md").write_text(markdown(points))
  plot(points, out / "label_sweep.png")
  print(markdown(points))
  print(f"Wrote {out / 'label_sweep.json'}, .md and .png")


if __name__ == "__main__":
  app.run(main)
