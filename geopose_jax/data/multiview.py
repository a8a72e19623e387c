"""Multi-view image loaders: NVS pairs, labelled single views, 4-view samples (SMPL).

They read a multi-view dataset (`synthetic_multiview`, `h36m_multiview`): one record per
(subject, sequence, frame) holding all 4 cameras (layout in data_prep's builders). Images
stay encoded until an item needs them, so only the views a batch uses are decoded, in the
Grain worker processes.

Common arguments of the loaders:
  data_config: `config.data`: the dataset (`name`, `builder_config`, `data_dir`,
    `manual_dir`), the loader (`num_workers`, `prefetch`, `read_threads`) and the subjects
    kept of the split (`train_subjects` / `test_subjects`; see sources.split_subjects).
  split: 'train' or 'test'.
  every_nth_frame: keep frames whose number is a multiple of it.
  global_batch_size: items per step over all processes.
  process_index, process_count: this process and the number of processes (each reads its
    own shard).
  seed, shuffle: item order and per-item randomness (views, partner frames).
  num_epochs: None for an endless training stream; a number for a finite pass, padded to
    whole batches with `valid` (B,) bool.
Batches are dicts of numpy arrays, process-local (global_batch_size / process_count items).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os

import grain
import ml_collections
import numpy as np

from geopose_jax.data import batching
from geopose_jax.data import sources
from geopose_jax.data import vocab

GROUP_SIZE = 4  # [frame t: cams a, b | frame t': cams c, d]


@dataclasses.dataclass(frozen=True)
class MultiviewIndex:
  """Where each record sits: its subject/action codes, sequence and frame.

  Sequences (subject, action, sequence name) are numbered in sorted order, so everything
  derived from the index (label subsets, sequence members) is independent of the order in
  which records happen to be stored.

  Entries are the records a loader may use (after subject and frame-rate selection).

  Attributes:
    record: (R,) the reader's record number of each entry.
    subject, action: (R,) int32 codes into `subject_names` / `action_names` per entry.
    frame: (R,) int32.
    sequence_id: (R,) int32 index into `sequences`.
    sequences: (S,) (subject, action, sequence) names.
    members: (R,) entries grouped by sequence, frames ascending.
    offsets: (S + 1,) start of each sequence's run in `members`.
    position: (R,) each entry's position inside its sequence's run.
    subject_names, action_names: the vocabularies of the entries' names
      (vocab.subject_vocabulary / action_vocabulary), the same on every host.
  """
  record: np.ndarray
  subject: np.ndarray
  action: np.ndarray
  frame: np.ndarray
  sequence_id: np.ndarray
  sequences: tuple[tuple[str, str, str], ...]
  members: np.ndarray
  offsets: np.ndarray
  position: np.ndarray
  subject_names: tuple[str, ...] = ()
  action_names: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.frame)

  def sequence_length(self, entry: np.ndarray) -> np.ndarray:
    """Frames in the sequence of each entry (same shape as `entry`)."""
    sequence = self.sequence_id[entry]
    return self.offsets[sequence + 1] - self.offsets[sequence]


def build_index(subjects, actions, sequences, frames, records=None) -> MultiviewIndex:
  """MultiviewIndex from per-entry names and frame numbers (lists of length R).

  `records` gives each entry's record number in the reader (default: 0 .. R-1).
  """
  keys = list(zip(subjects, actions, sequences))
  names = tuple(sorted(set(keys)))
  number = {name: i for i, name in enumerate(names)}
  sequence_id = np.asarray([number[k] for k in keys], np.int32)
  frame = np.asarray(frames, np.int32)
  members = np.lexsort((frame, sequence_id)).astype(np.int64)
  counts = np.bincount(sequence_id, minlength=len(names))
  offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
  position = np.empty(len(frame), np.int64)
  position[members] = np.arange(len(frame)) - np.repeat(offsets[:-1], counts)
  subject_names = vocab.subject_vocabulary(subjects)
  action_names = vocab.action_vocabulary(actions)
  subject_code = {name: i for i, name in enumerate(subject_names)}
  action_code = {name: i for i, name in enumerate(action_names)}
  return MultiviewIndex(
      record=np.arange(len(frame)) if records is None else np.asarray(records, np.int64),
      subject=np.asarray([subject_code[s] for s in subjects], np.int32),
      action=np.asarray([action_code[a] for a in actions], np.int32),
      frame=frame, sequence_id=sequence_id, sequences=names, members=members,
      offsets=offsets, position=position, subject_names=subject_names,
      action_names=action_names)


_INDEX_FILE = "geopose_index-{split}.json"


@functools.lru_cache(maxsize=8)
def _scan(builder_dir: str, split: str) -> tuple[tuple[str, str, str, int], ...]:
  """(subject, action, sequence, frame) of every record of a split.

  Reading them means parsing every record, so the result is kept next to the records
  (`geopose_index-<split>.json`, written atomically; skipped if the folder is read-only)
  and in memory. A rebuilt dataset is a new folder, so the file cannot go stale.
  """
  path = os.path.join(builder_dir, _INDEX_FILE.format(split=split))
  reader = sources.RecordReader(builder_dir, split)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      cached = json.load(f)
    if len(cached) == len(reader):
      return tuple((s, a, q, int(n)) for s, a, q, n in cached)
  fields = (reader.parse(i) for i in range(len(reader)))
  index = tuple((f["subject"], f["action"], f["sequence"], int(f["frame"])) for f in fields)
  try:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
      json.dump(index, f)
    os.replace(temporary, path)
  except OSError as error:
    logging.info("not caching the record index in %s (%s)", builder_dir, error)
  return index


def open_multiview(data_config: ml_collections.ConfigDict, split: str, *,
                   every_nth_frame: int = 1) -> tuple[sources.RecordReader, MultiviewIndex]:
  """The split's reader and index (the dataset is built on first use, scanned once).

  Keeps the subjects `sources.split_subjects` names (each must be in the split) and the
  frames whose number is a multiple of `every_nth_frame`.
  """
  builder = sources.open_dataset(data_config)
  reader = sources.reader_for(builder, split)
  fields = _scan(reader.builder_dir, split)
  subjects = sources.split_subjects(data_config, split)
  present = sorted({f[0] for f in fields})
  missing = [s for s in subjects if s not in present]
  if missing:
    raise ValueError(f"config.data.{split}_subjects names {missing}, which split {split!r} of "
                     f"{reader.builder_dir} does not hold (it has {present})")
  step = int(every_nth_frame)
  if step < 1:
    raise ValueError(f"config.data.every_nth_frame={step} must be >= 1")
  chosen = [i for i, f in enumerate(fields)
            if (not subjects or f[0] in subjects) and f[3] % step == 0]
  if not chosen:
    raise ValueError(f"{reader.builder_dir} [{split}]: no record left after selecting "
                     f"subjects {subjects or present} and every {step}th frame")
  picked = [fields[i] for i in chosen]
  index = build_index(*zip(*picked), records=chosen)
  return reader, index


def label_subset(index: MultiviewIndex, subjects=(), fraction: float = 1.0, seed: int = 0
                 ) -> np.ndarray:
  """Records whose labels a semi-supervised task may use; deterministic.

  Args:
    index: the split's index.
    subjects: subject names to keep (empty: all); each must be in the split.
    fraction: keep this fraction of those records' frames, chosen at random with `seed`
      (at least one record).
    seed: the choice of frames; the same seed gives the same subset on every machine.

  Returns:
    (L,) sorted entries of `index`.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"config.data.label_fraction={fraction} must be in (0, 1]")
  keep = np.ones(len(index), bool)
  if subjects:
    missing = [s for s in subjects if s not in index.subject_names]
    if missing:
      raise ValueError(f"config.data.label_subjects {tuple(subjects)}: {missing} not in this "
                       f"split (it has {list(index.subject_names)})")
    codes = [index.subject_names.index(s) for s in subjects]
    keep = np.isin(index.subject, codes)
  candidates = index.members[keep[index.members]]  # sorted by (sequence, frame)
  if fraction < 1.0:
    count = max(1, int(round(fraction * len(candidates))))
    chosen = np.random.default_rng(seed).permutation(len(candidates))[:count]
    candidates = candidates[chosen]
  return np.sort(candidates)


@dataclasses.dataclass(frozen=True)
class Labels:
  """Which training records a semi-supervised task may read labels of (`label_subset`)."""
  subjects: tuple[str, ...] = ()
  fraction: float = 1.0
  seed: int = 0

  @classmethod
  def from_config(cls, data_config: ml_collections.ConfigDict) -> "Labels":
    """`config.data.label_subjects`, `label_fraction`, `label_seed`."""
    return cls(tuple(str(s) for s in data_config.label_subjects),
               float(data_config.label_fraction), int(data_config.label_seed))


def _entries(index: MultiviewIndex, labels: Labels | None) -> np.ndarray:
  if labels is None:
    return np.arange(len(index))
  return label_subset(index, labels.subjects, labels.fraction, labels.seed)


# ----------------------------------------------------------------------------- items


def _codes(index: MultiviewIndex, entry: int) -> sources.Record:
  """subject, action (codes into the index's vocabularies) and sequence of an entry."""
  return {"subject": np.int32(index.subject[entry]), "action": np.int32(index.action[entry]),
          "sequence": np.int32(index.sequence_id[entry])}


def _view(record: sources.Record, view: int, codes: sources.Record) -> sources.Record:
  """One camera of a record -> the single-view keys (see `single_views`)."""
  return {
      "image": sources.decode_view(record["images"], view),
      "background": sources.decode_view(record["backgrounds"], view),
      "mask": sources.decode_mask(record["masks"], view)[..., None],
      "R": np.asarray(record["R"][view], np.float32),
      "K": np.asarray(record["K"][view], np.float32),
      "pose_3d_cam": np.asarray(record["pose_3d_cam"][view], np.float32),
      **codes,
      "camera": np.int32(view),
      "frame": np.int32(record["frame"]),
  }


def _stack(items: list[sources.Record]) -> sources.Record:
  return {key: np.stack([item[key] for item in items]) for key in items[0]}


def _pair_group(element, rng: np.random.Generator, *, reader: sources.RecordReader,
                index: MultiviewIndex) -> sources.Record:
  """Anchor entry t -> [t cam a, t cam b, t' cam c, t' cam d], t' != t same sequence."""
  anchor = int(element["entry"])
  start = index.offsets[index.sequence_id[anchor]]
  length = index.sequence_length(anchor)
  other = int(rng.integers(length - 1))
  other += other >= index.position[anchor]  # skip the anchor itself
  partner = int(index.members[start + other])
  first = reader.parse(int(index.record[anchor]))
  second = reader.parse(int(index.record[partner]))
  num_views = len(first["R"])
  a, b = rng.choice(num_views, 2, replace=False)
  c, d = rng.choice(num_views, 2, replace=False)
  codes = _codes(index, anchor)  # the partner is of the same sequence
  group = _stack([_view(first, a, codes), _view(first, b, codes), _view(second, c, codes),
                  _view(second, d, codes)])
  if "valid" in element:
    group["valid"] = np.repeat(element["valid"], GROUP_SIZE)
  return group


def _flatten_groups(batch: sources.Record) -> sources.Record:
  """(G, 4, ...) -> (4 G, ...), keeping each group's 4 items adjacent."""
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}


def _single_view(element, *, reader: sources.RecordReader, index: MultiviewIndex
                 ) -> sources.Record:
  item = _view(reader.parse(int(index.record[element["entry"]])), int(element["view"]),
               _codes(index, int(element["entry"])))
  if "valid" in element:
    item["valid"] = element["valid"]
  return item


def _all_views(element, *, reader: sources.RecordReader, index: MultiviewIndex
               ) -> sources.Record:
  record = reader.parse(int(index.record[element["entry"]]))
  num_views = len(record["R"])
  item = {
      "images": np.stack([sources.decode_view(record["images"], v) for v in range(num_views)]),
      "masks": np.stack([sources.decode_mask(record["masks"], v) for v in range(num_views)]),
      "R": np.asarray(record["R"], np.float32),
      "t": np.asarray(record["t"], np.float32),
      "K": np.asarray(record["K"], np.float32),
      "pose_3d_cam": np.asarray(record["pose_3d_cam"], np.float32),
      "pose_3d_world": np.asarray(record["pose_3d_world"], np.float32),
      **_codes(index, int(element["entry"])),
      "frame": np.int32(record["frame"]),
  }
  if "valid" in element:
    item["valid"] = element["valid"]
  return item


# ----------------------------------------------------------------------------- loaders


def nvs_pairs(data_config: ml_collections.ConfigDict, *, split: str = "train",
              global_batch_size: int = 32, process_index: int = 0, process_count: int = 1,
              seed: int = 0, shuffle: bool = True, num_epochs: int | None = None,
              every_nth_frame: int = 1) -> grain.DataLoader:
  """Groups of views for novel-view synthesis (Rhodin et al.'s batch composition).

  Each batch is B / 4 groups of 4 consecutive items [frame t: cam a, frame t: cam b,
  frame t': cam c, frame t': cam d] with a != b, c != d, t != t' frames of the same
  sequence (chosen at random per group; reproducible from `seed`). Every record of a
  sequence with at least 2 frames anchors one group per epoch.

  Batch (B = global_batch_size / process_count, a multiple of 4):
    image (B, H, W, 3) uint8, background (B, H, W, 3) uint8 (the same view's background),
    mask (B, H, W, 1) uint8 {0, 1}, R (B, 3, 3) f32 world->camera, K (B, 3, 3) f32 crop
    intrinsics, pose_3d_cam (B, 17, 3) f32 mm, subject (B,) int32, action (B,) int32
    (codes into the index's subject_names / action_names), sequence (B,) int32 (index
    into `open_multiview(...)[1].sequences`), camera (B,) int32 view index, frame (B,)
    int32; + valid (B,) bool for a finite pass (the 4 items of a padding group are all
    invalid).
  """
  local = batching.local_batch_size(global_batch_size, process_count, GROUP_SIZE)
  reader, index = open_multiview(data_config, split, every_nth_frame=every_nth_frame)
  anchors = np.flatnonzero(index.sequence_length(np.arange(len(index))) >= 2)
  if not len(anchors):
    raise ValueError(f"{reader.builder_dir} [{split}]: no sequence has 2 frames; NVS pairs "
                     "need two frames of one sequence")
  return batching.make_loader(
      batching.ArraySource({"entry": anchors}), data_config=data_config,
      item_ops=[batching.FnRandomMap(_pair_group, reader=reader, index=index)],
      batch_size=local // GROUP_SIZE, batch_ops=[batching.FnMap(_flatten_groups)],
      process_index=process_index, process_count=process_count, seed=seed,
      shuffle=shuffle, num_epochs=num_epochs)


def single_views(data_config: ml_collections.ConfigDict, *, split: str = "train",
                 global_batch_size: int = 32, process_index: int = 0, process_count: int = 1,
                 seed: int = 0, shuffle: bool = True, num_epochs: int | None = None,
                 every_nth_frame: int = 1, labels: Labels | None = None
                 ) -> grain.DataLoader:
  """Independent (record, camera) views, e.g. for the pose head.

  With `labels`, only that label subset (see `label_subset`) is used; None (evaluation)
  reads the whole split.

  Batch (B = global_batch_size / process_count): the keys of `nvs_pairs` (image,
  background, mask, R, K, pose_3d_cam mm, subject, action, sequence, camera, frame), independent
  items; + valid (B,) bool for a finite pass.
  """
  local = batching.local_batch_size(global_batch_size, process_count)
  reader, index = open_multiview(data_config, split, every_nth_frame=every_nth_frame)
  entries = _entries(index, labels)
  num_views = len(reader.parse(int(index.record[entries[0]]))["R"])
  return batching.make_loader(
      batching.ArraySource({"entry": np.repeat(entries, num_views),
                           "view": np.tile(np.arange(num_views), len(entries))}),
      data_config=data_config,
      item_ops=[batching.FnMap(_single_view, reader=reader, index=index)],
      batch_size=local, process_index=process_index, process_count=process_count,
      seed=seed, shuffle=shuffle, num_epochs=num_epochs)


def multiview_samples(data_config: ml_collections.ConfigDict, *, split: str = "train",
                      global_batch_size: int = 64, process_index: int = 0,
                      process_count: int = 1, seed: int = 0, shuffle: bool = True,
                      num_epochs: int | None = None, every_nth_frame: int = 1,
                      labels: Labels | None = None) -> grain.DataLoader:
  """All 4 views of a frame per item (SMPL regression with silhouettes); `labels` as in
  `single_views`.

  Batch (B = global_batch_size / process_count):
    images (B, 4, H, W, 3) uint8, masks (B, 4, H, W) uint8 {0, 1}, R (B, 4, 3, 3),
    t (B, 4, 3) camera centres mm, K (B, 4, 3, 3), pose_3d_cam (B, 4, 17, 3) mm,
    pose_3d_world (B, 17, 3) mm, subject (B,), action (B,), sequence (B,), frame (B,) int32
    (codes as in `nvs_pairs`);
    + valid (B,) bool for a finite pass.
  """
  local = batching.local_batch_size(global_batch_size, process_count)
  reader, index = open_multiview(data_config, split, every_nth_frame=every_nth_frame)
  entries = _entries(index, labels)
  return batching.make_loader(
      batching.ArraySource({"entry": np.asarray(entries)}), data_config=data_config,
      item_ops=[batching.FnMap(_all_views, reader=reader, index=index)], batch_size=local,
      process_index=process_index, process_count=process_count, seed=seed,
      shuffle=shuffle, num_epochs=num_epochs)
