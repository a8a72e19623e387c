"""Contact sheet of a multi-view dataset: `python -m data_prep.show <name> [--out sheet.png]`.

For a few records of each split it draws the four views with the crop 2D pose on top
(left limbs blue, right limbs red, torso and head green), the foreground masks as
outlines, and the background crops, so one can see that skeletons, masks and images agree.
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data_prep import build  # noqa: E402
from data_prep.synthetic_multiview import features as features_lib  # noqa: E402

_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
_LEFT = {4, 5, 6, 11, 12, 13}
_RIGHT = {1, 2, 3, 14, 15, 16}


def _bone_colour(child: int) -> str:
  return "tab:blue" if child in _LEFT else "tab:red" if child in _RIGHT else "lime"


def draw_skeleton(ax, pose_2d: np.ndarray) -> None:
  """Draws a (17, 2) Human3.6M pose on a matplotlib axis (image coordinates)."""
  for child, parent in enumerate(_PARENTS):
    if parent >= 0:
      ax.plot(pose_2d[[parent, child], 0], pose_2d[[parent, child], 1],
              color=_bone_colour(child), linewidth=1.2)
  ax.scatter(pose_2d[:, 0], pose_2d[:, 1], s=3, color="yellow", zorder=3)


def pick(num_records: int, count: int) -> list[int]:
  """`count` indices spread evenly over a split."""
  count = min(count, num_records)
  return sorted({int(round(i)) for i in np.linspace(0, num_records - 1, count)})


def contact_sheet(records: list[dict], titles: list[str], path: str) -> str:
  """Writes a PNG: per record, rows of images+skeleton, masks, backgrounds (4 views)."""
  num_views = records[0]["images"].shape[0]
  rows = 3 * len(records)
  fig, axes = plt.subplots(rows, num_views, figsize=(1.9 * num_views, 1.9 * rows),
                           squeeze=False)
  for r, (record, title) in enumerate(zip(records, titles)):
    for v in range(num_views):
      ax_img, ax_mask, ax_bg = axes[3 * r, v], axes[3 * r + 1, v], axes[3 * r + 2, v]
      ax_img.imshow(record["images"][v])
      draw_skeleton(ax_img, record["pose_2d_crop"][v])
      ax_mask.imshow(record["images"][v])
      ax_mask.imshow(np.ma.masked_equal(record["masks"][v], 0), cmap="autumn", alpha=0.45,
                     vmin=0, vmax=1)
      ax_mask.contour(record["masks"][v], levels=[0.5], colors="white", linewidths=0.6)
      ax_bg.imshow(record["backgrounds"][v])
      for ax in (ax_img, ax_mask, ax_bg):
        ax.set_xlim(-0.5, record["images"].shape[2] - 0.5)
        ax.set_ylim(record["images"].shape[1] - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
      if v == 0:
        ax_img.set_ylabel("image + 2D", fontsize=7)
        ax_mask.set_ylabel("mask", fontsize=7)
        ax_bg.set_ylabel("background", fontsize=7)
    axes[3 * r, 0].set_title(title, fontsize=7, loc="left")
  fig.tight_layout(pad=0.3)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def show(name: str, data_dir: str | None = None, out: str | None = None,
         per_split: int = 3) -> str:
  """Builds `name` if needed and writes its contact sheet; returns the PNG path."""
  builder = build.ensure_built(name, data_dir)
  missing = {"images", "masks", "backgrounds", "pose_2d_crop"} - set(builder.info.features)
  if missing:
    raise ValueError(f"data_prep.show draws multi-view datasets; {name!r} has no "
                     f"{sorted(missing)} features")
  source = builder.as_data_source()
  records, titles = [], []
  for split in sorted(source, key=lambda s: (s != "train", s)):
    for index in pick(len(source[split]), per_split):
      record = features_lib.decode_record(source[split][index])
      records.append(record)
      titles.append(f"{split} #{index}: {record['subject']} {record['action']} "
                    f"{record['sequence']} frame {record['frame']}")
  if not records:
    raise ValueError(f"dataset {name!r} in {builder.data_dir} has no records")
  out = out or f"{name.replace('/', '_')}_contact_sheet.png"
  return contact_sheet(records, titles, out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m data_prep.show", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", help="a multi-view dataset[/config], e.g. synthetic_multiview")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--out", default=None, help="PNG path (default <name>_contact_sheet.png)")
  parser.add_argument("--per_split", type=int, default=3, help="records per split")
  args = parser.parse_args(argv)
  try:
    path = show(args.name, args.data_dir, args.out, args.per_split)
  except (ValueError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
