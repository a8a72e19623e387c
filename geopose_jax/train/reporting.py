"""Evaluation results on disk and on screen: `eval/<split>.json`, `.md`, and a printed table.

Results are the dicts a task's `evaluate` returns: top-level metrics (numbers), optionally
`num_frames`, and `per_action` = {action: {metric: value, "num_frames": n}}; an
MPI-INF-3DHP result (`protocol` 'mpi_inf_3dhp') is drawn as that protocol's own tables.
`joint_map` and `notes`, where present, are printed under the table.
"""

from __future__ import annotations

import json
import numbers
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from geopose_jax import metrics
from geopose_jax.protocols import mpi_inf_3dhp


def _plain(value: Any) -> Any:
  """numpy scalars/arrays -> JSON-friendly Python values."""
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  return value


def scalars(results: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """The top-level numeric entries of `results`, for TensorBoard and metrics.jsonl."""
  return {f"{prefix}{k}": float(v) for k, v in results.items()
          if isinstance(v, (numbers.Number, np.generic)) and not isinstance(v, bool)}


def as_markdown(results: Mapping[str, Any], title: str = "") -> str:
  """A markdown table: one row per action (when present), then the overall row, then how
  the numbers were computed (the evaluator's `convention`, a protocol's joint map, notes)."""
  if results.get("protocol") == "mpi_inf_3dhp":
    table = mpi_inf_3dhp.format_markdown(results)
  else:
    table = metrics.format_table(results)
  convention = results.get("convention")
  if isinstance(convention, Mapping):
    lines = []
    for key, value in convention.items():
      for line in (value if isinstance(value, list) else [value]):
        lines.append(f"- {key}: {line}")
    table += "\n" + "\n".join(lines) + "\n"
  if results.get("joint_map"):
    table += f"\nJoints: {results['joint_map']}.\n"
  for note in results.get("notes", ()):
    table += f"\nNote: {note}.\n"
  return f"### {title}\n\n{table}" if title else table


def write_eval(workdir: str | os.PathLike, split: str, results: Mapping[str, Any],
               step: int, eval_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
  """Writes `workdir/eval/<split>.json` and `.md` (atomically: temp file, then rename).

  `eval_dir` replaces `workdir/eval` (e.g. evaluating a read-only archived run)."""
  eval_dir = pathlib.Path(eval_dir) if eval_dir is not None else pathlib.Path(workdir) / "eval"
  eval_dir.mkdir(parents=True, exist_ok=True)
  payload = {"step": int(step), **_plain(dict(results))}
  paths = []
  for suffix, text in ((".json", json.dumps(payload, indent=2)),
                       (".md", as_markdown(results, title=f"{split} (step {step})") + "\n")):
    path = eval_dir / f"{split}{suffix}"
    tmp = path.with_suffix(suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    paths.append(path)
  return paths
