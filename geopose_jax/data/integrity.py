"""Checks that a built TFDS dataset folder is whole before anything reads it.

A folder is whole when `dataset_info.json` and `features.json` read, and every shard that
`dataset_info.json` lists for every split is present and holds the recorded number of
records. TFDS itself only looks for `dataset_info.json`, so a deleted or truncated shard
otherwise surfaces much later as a confusing error deep inside training.
"""

from __future__ import annotations

import json
import os
import pathlib

from geopose_jax.errors import DatasetError

_FORMAT_SUFFIX = {"array_record": "array_record", "tfrecord": "tfrecord"}


def _shard_paths(folder: pathlib.Path, dataset: str, split: dict, file_format: str
                 ) -> list[pathlib.Path]:
  """The shard files of one split entry of dataset_info.json, in order."""
  lengths = split.get("shardLengths", [])
  template = split.get("filepathTemplate") or "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
  paths = []
  for index in range(len(lengths)):
    name = (template.replace("{DATASET}", dataset).replace("{SPLIT}", split["name"])
            .replace("{FILEFORMAT}", _FORMAT_SUFFIX.get(file_format, file_format))
            .replace("{SHARD_X_OF_Y}", f"{index:05d}-of-{len(lengths):05d}")
            .replace("{SHARD_INDEX}", f"{index:05d}").replace("{NUM_SHARDS}", f"{len(lengths):05d}"))
    paths.append(folder / name)
  return paths


def _count_records(path: pathlib.Path) -> int:
  from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=g-import-not-at-top
  reader = ArrayRecordReader(os.fspath(path))
  try:
    return int(reader.num_records())
  finally:
    reader.close()


def dataset_problems(folder: str | os.PathLike) -> list[str]:
  """What is wrong with a built dataset folder (`<data_dir>/<name>/<config>/<version>`).

  Returns:
    One short sentence per problem; empty when the folder is whole.
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    return [f"{folder} does not exist"]
  problems = []
  try:
    info = json.loads((folder / "dataset_info.json").read_text())
  except FileNotFoundError:
    return ["dataset_info.json is missing"]
  except (OSError, ValueError) as e:
    return [f"dataset_info.json cannot be read ({type(e).__name__})"]
  try:
    json.loads((folder / "features.json").read_text())
  except FileNotFoundError:
    problems.append("features.json is missing")
  except (OSError, ValueError) as e:
    problems.append(f"features.json cannot be read ({type(e).__name__})")
  splits = info.get("splits") or []
  if not splits:
    problems.append("dataset_info.json lists no splits")
  dataset = info.get("name", folder.parent.parent.name)
  file_format = info.get("fileFormat", "array_record")
  for split in splits:
    lengths = [int(n) for n in split.get("shardLengths", [])]
    for path, expected in zip(_shard_paths(folder, dataset, split, file_format), lengths):
      if not path.is_file():
        problems.append(f"split {split['name']!r}: shard {path.name} is missing")
        continue
      if file_format != "array_record":
        continue
      try:
        found = _count_records(path)
      except Exception as e:  # pylint: disable=broad-except
        problems.append(f"split {split['name']!r}: shard {path.name} cannot be opened, it is "
                        f"truncated or damaged ({type(e).__name__})")
        continue
      if found != expected:
        problems.append(f"split {split['name']!r}: shard {path.name} holds {found} records, "
                        f"dataset_info.json says {expected} (truncated or overwritten)")
  return problems


def check_dataset(folder: str | os.PathLike, name: str = "") -> None:
  """Raises DatasetError naming the folder and every problem; returns if it is whole."""
  problems = dataset_problems(folder)
  if problems:
    rebuild = (f"python -m data_prep.build {name} --rebuild" if name else
               "delete the folder and build the dataset again")
    raise DatasetError(f"dataset {folder} is damaged: {'; '.join(problems)}. Rebuild it with "
                       f"`{rebuild}` (add the options it was built with, e.g. --data_dir).")
