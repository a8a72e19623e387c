r"""The mean-training-pose baseline of a pose task, on the task's own data and split.

Predicts the mean root-relative camera-frame training pose for every test frame and
prints (and writes, with --out) the evaluator's table per split:

  python scripts/mean_pose_baseline.py --config=configs/rie.py:demo --splits=test,heldout
  python scripts/mean_pose_baseline.py --config=configs/nvs_pose.py:demo --out=runs/baseline

`h36m_poses` tasks (rie, lifter) take every training frame; multi-view tasks (nvs_pose)
take every view of the training records, and also the labelled records only
(config.data.label_subjects / label_fraction), which is all a semi-supervised head sees.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

config_flags.DEFINE_config_file("config", None, "A task config, e.g. configs/rie.py:demo.")
flags.DEFINE_list("splits", ["test"], "Splits to score.")
flags.DEFINE_string("out", "", "Folder for mean_pose_<split>.json (empty: print only).")
FLAGS = flags.FLAGS


def _pose_table_tables(config, splits):
  from geopose_jax import baselines, evaluation  # pylint: disable=g-import-not-at-top
  from geopose_jax.data import poses as poses_data  # pylint: disable=g-import-not-at-top
  train = poses_data.load_poses(config.data, "train").pose_3d_cam * 1000.0
  out = {}
  for split in splits:
    table = poses_data.load_poses(config.data, split)
    out[split] = baselines.mean_pose_baseline(
        train, table.pose_3d_cam * 1000.0, table.sequence_of_frame,
        evaluation.SequenceInfo.from_names(table.names))
  return out


def _multiview_tables(config, splits):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from geopose_jax import baselines, evaluation  # pylint: disable=g-import-not-at-top
  from geopose_jax.data import multiview  # pylint: disable=g-import-not-at-top

  def views(reader, index, entries):
    poses = np.stack([reader.parse(int(index.record[e]))["pose_3d_cam"] for e in entries])
    return poses.reshape(-1, *poses.shape[2:]), np.repeat(index.sequence_id[entries],
                                                          poses.shape[1])

  reader, index = multiview.open_multiview(config.data, "train")
  train_all, _ = views(reader, index, np.arange(len(index)))
  labels = multiview.Labels.from_config(config.data)
  labelled = multiview.label_subset(index, labels.subjects, labels.fraction, labels.seed)
  train_labelled, _ = views(reader, index, labelled)
  out = {}
  for split in splits:
    reader, index = multiview.open_multiview(config.data, split)
    test, sequence = views(reader, index, np.arange(len(index)))
    info = evaluation.SequenceInfo.from_names(index.sequences)
    for name, train in (("labelled", train_labelled), ("all_train", train_all)):
      # nvs_pose reports Rhodin's N-MPJPE (mean over the non-root joints): so does this.
      out[f"{split}/{name}"] = baselines.mean_pose_baseline(
          train, test, sequence, info, evaluation.Convention(rhodin_n_mpjpe=True))
  return out


def main(argv):
  del argv
  config = FLAGS.config
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=configs/rie.py:demo")
  if config.data.name in ("synthetic_multiview", "h36m_multiview"):
    tables = _multiview_tables(config, FLAGS.splits)
  else:
    tables = _pose_table_tables(config, FLAGS.splits)
  for name, table in tables.items():
    print(f"{name}: mean-pose baseline ({table['baseline']}): "
          + ", ".join(f"{k} {table[k]:.1f}" for k in ("mpjpe", "n_mpjpe", "n_mpjpe_rhodin",
                                                     "pa_mpjpe") if k in table))
    if FLAGS.out:
      folder = pathlib.Path(FLAGS.out)
      folder.mkdir(parents=True, exist_ok=True)
      path = folder / f"mean_pose_{name.replace('/', '_')}.json"
      temp = path.with_suffix(".json.tmp")
      temp.write_text(json.dumps(table, indent=1))
      os.replace(temp, path)


if __name__ == "__main__":
  app.run(main)
