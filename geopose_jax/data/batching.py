"""The Grain plumbing every loader shares: sources, transformations, DataLoaders.

Every loader in geopose_jax/data/ is a `grain.DataLoader` made here:
- each process reads its own shard (`grain.sharding.ShardOptions` by process index/count);
- transformations run in `config.data.num_workers` worker processes, each keeping
  `config.data.prefetch` batches ready;
- its iterators have `get_state()` / `set_state()`, which the training loop checkpoints
  with Orbax (`grain.checkpoint`), so a resumed run sees the same data order (sources
  name their content in `repr`, which Grain compares when restoring);
- a finite pass (`num_epochs` set) is padded to whole batches on every process, the same
  number of batches everywhere, and marks real items with `valid` (B,) bool; an endless
  stream (`num_epochs=None`) never ends, so it is neither padded nor marked.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from typing import Any, Callable, Mapping, Sequence

from absl import flags
import grain
import ml_collections
import numpy as np

Record = dict[str, Any]



class ArraySource(grain.sources.RandomAccessDataSource):
  """In-memory items: item i is {key: array[i]} (a grain RandomAccessDataSource)."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
      raise ValueError(f"arrays of different lengths: { {k: len(v) for k, v in arrays.items()} }")
    self._arrays = dict(arrays)
    self._length = lengths.pop()

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Record:
    return {k: v[index] for k, v in self._arrays.items()}

  def __repr__(self) -> str:
    # Grain compares reprs to check that a restored iterator state fits this source, so
    # the repr names the content, not the object.
    digest = hashlib.sha256()
    for key in sorted(self._arrays):
      digest.update(key.encode())
      digest.update(np.ascontiguousarray(self._arrays[key]).tobytes())
    return f"ArraySource(keys={sorted(self._arrays)}, length={self._length}, " \
           f"sha256={digest.hexdigest()[:16]})"


class PaddedSource(grain.sources.RandomAccessDataSource):
  """`source` padded to `length` items by repeating its last item; adds `valid` (bool)."""

  def __init__(self, source, length: int):
    if len(source) == 0:
      raise ValueError("cannot evaluate on an empty split")
    self._source = source
    self._length = length

  def __len__(self) -> int:
    return self._length

  def __repr__(self) -> str:
    return f"PaddedSource({self._source!r}, length={self._length})"

  def __getitem__(self, index: int) -> Record:
    real = index < len(self._source)
    item = dict(self._source[min(index, len(self._source) - 1)])
    item["valid"] = np.bool_(real)
    return item


class FnMap(grain.transforms.Map):
  """A picklable Map from a module-level function (and fixed keyword arguments)."""

  def __init__(self, fn: Callable[..., Record], **kwargs):
    self._fn = functools.partial(fn, **kwargs) if kwargs else fn

  def map(self, element):
    return self._fn(element)


class FnRandomMap(grain.transforms.RandomMap):
  """A picklable RandomMap from a function (element, rng, **kwargs) -> element."""

  def __init__(self, fn: Callable[..., Record], **kwargs):
    self._fn = functools.partial(fn, **kwargs) if kwargs else fn

  def random_map(self, element, rng: np.random.Generator):
    return self._fn(element, rng)


def local_batch_size(global_batch_size: int, process_count: int, multiple: int = 1) -> int:
  """This process's share of the global batch; raises if it does not split evenly."""
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} does not split over "
                     f"{process_count} processes")
  local = global_batch_size // process_count
  if local % multiple:
    raise ValueError(f"the per-process batch {local} must be a multiple of {multiple}; "
                     "change --config.train.batch_size (or eval.batch_size)")
  return local


def make_loader(source, *, data_config: ml_collections.ConfigDict, item_ops: Sequence = (),
                batch_size: int, batch_ops: Sequence = (), process_index: int = 0,
                process_count: int = 1, seed: int = 0, shuffle: bool = True,
                num_epochs: int | None = None, read_threads: int | None = None
                ) -> grain.DataLoader:
  """The DataLoader every pipeline uses.

  Args:
    source: a RandomAccessDataSource of items (global: every process sees all of it).
    data_config: `config.data` (num_workers, prefetch).
    item_ops: per-item transformations, before batching.
    batch_size: items per process-local batch.
    batch_ops: transformations of whole batches, after batching.
    process_index, process_count: this process and the number of processes.
    seed: shuffling and per-item randomness.
    shuffle: shuffle items (each epoch differently).
    num_epochs: None for an endless stream; else passes over the data, padded to whole
      batches with `valid` marking the real items.
    read_threads: threads that read and transform items ahead of batching, in each
      process (decoding images releases the GIL); default `config.data.read_threads` or
      4. 0 for cheap items (index lookups), where a thread pool costs more than it saves.
  """
  if num_epochs is not None:
    per_process = math.ceil(len(source) / process_count)
    num_batches = max(1, math.ceil(per_process / batch_size))
    source = PaddedSource(source, num_batches * batch_size * process_count)
  elif len(source) < process_count * batch_size:
    raise ValueError(f"the split holds {len(source)} items, fewer than one global batch "
                     f"({process_count} x {batch_size}); lower the batch size")
  sampler = grain.samplers.IndexSampler(
      num_records=len(source),
      shard_options=grain.sharding.ShardOptions(
          shard_index=process_index, shard_count=process_count, drop_remainder=True),
      shuffle=shuffle, num_epochs=num_epochs, seed=seed)
  operations = [*item_ops, grain.transforms.Batch(batch_size, drop_remainder=True),
                *batch_ops]
  return _data_loader(source, sampler, operations, data_config, read_threads)


def _data_loader(source, sampler, operations, data_config, read_threads: int | None
                 ) -> grain.DataLoader:
  num_workers = int(data_config.num_workers)
  if num_workers and not flags.FLAGS.is_parsed():
    # Grain's worker processes read absl flags; outside an absl app (tests, notebooks)
    # their defaults are what we want.
    flags.FLAGS.mark_as_parsed()
  prefetch = max(1, int(data_config.prefetch))
  if read_threads is None:
    read_threads = int(data_config.read_threads)
  # Grain's read buffer is scanned on every item, so a long one costs O(length) per item.
  read_options = grain.ReadOptions(num_threads=read_threads,
                                   prefetch_buffer_size=64 if read_threads else 0)
  logging.info("loader: %d items, %d workers, %d read threads", len(source), num_workers,
               read_threads)
  return grain.DataLoader(
      data_source=source, sampler=sampler, operations=operations, worker_count=num_workers,
      worker_buffer_size=prefetch, read_options=read_options)


class IndexBatches(grain.sources.RandomAccessDataSource):
  """Whole process-local batches of item numbers, for items too cheap to sample one by one.

  Item j of this source is one process's batch: {'index': (L,) int64 item numbers} (+
  'valid' (L,) bool for a finite pass, + 'flip' (L,) bool when `draw_flips`). Epoch e
  visits the items in the order of a permutation drawn from (seed, e) (or in order without
  `shuffle`), cut into global batches of L x P; process p takes the p-th run of L of each.
  The source is laid out so that grain's contiguous sharding (ShardOptions) hands process
  p exactly its parts, so processes read disjoint items and the global batches do not
  depend on the number of processes. An endless stream is 2^40 items long.
  """

  def __init__(self, num_items: int, local_batch: int, process_count: int, *, seed: int,
               shuffle: bool, num_epochs: int | None, draw_flips: bool = False):
    if num_items <= 0:
      raise ValueError("the split holds no items")
    self.num_items, self.local_batch, self.seed = num_items, local_batch, seed
    self.shuffle, self.draw_flips, self.padded = shuffle, draw_flips, num_epochs is not None
    if self.padded:
      per_epoch = math.ceil(num_items / (local_batch * process_count))
    else:
      per_epoch = num_items // (local_batch * process_count)
      if not per_epoch:
        raise ValueError(f"the split holds {num_items} items, fewer than one global batch "
                         f"({process_count} x {local_batch}); lower the batch size")
    self.batches_per_epoch = per_epoch          # per process
    epochs = num_epochs if self.padded else max(1, (1 << 40) // (per_epoch * process_count))
    self.per_process = per_epoch * epochs
    self.process_count = process_count
    self._permutation = (None, None)

  def __len__(self) -> int:
    return self.per_process * self.process_count

  def __repr__(self) -> str:
    return (f"IndexBatches(num_items={self.num_items}, local_batch={self.local_batch}, "
            f"process_count={self.process_count}, seed={self.seed}, shuffle={self.shuffle}, "
            f"padded={self.padded}, draw_flips={self.draw_flips}, length={len(self)})")

  def _order(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(self.num_items)
    cached_epoch, order = self._permutation
    if cached_epoch != epoch:
      order = np.random.default_rng((self.seed, epoch)).permutation(self.num_items)
      self._permutation = (epoch, order)
    return order

  def __getitem__(self, j: int) -> Record:
    process, i = divmod(int(j), self.per_process)
    epoch, k = divmod(i, self.batches_per_epoch)
    # Global batch k of the epoch covers positions [k L P, (k + 1) L P) of the epoch's
    # order; process p takes the p-th run of L. The global batches are therefore the same
    # whatever the number of processes.
    positions = ((k * self.process_count + process) * self.local_batch
                 + np.arange(self.local_batch))
    order = self._order(epoch)
    item = {"index": order[np.minimum(positions, self.num_items - 1)]}
    if self.padded:
      item["valid"] = positions < self.num_items
    if self.draw_flips:
      rng = np.random.default_rng((self.seed, epoch, k, process, 1))
      item["flip"] = rng.random(self.local_batch) < 0.5
    return item


def make_batch_loader(num_items: int, *, data_config: ml_collections.ConfigDict,
                      batch_size: int, batch_ops: Sequence, process_index: int = 0,
                      process_count: int = 1, seed: int = 0, shuffle: bool = True,
                      num_epochs: int | None = None, draw_flips: bool = False
                      ) -> grain.DataLoader:
  """A DataLoader over `IndexBatches`: `batch_ops` turn item numbers into a batch.

  Same contract as `make_loader` (sharding, workers, state, padding with `valid`), for
  in-memory data where per-item sampling would cost more than the data itself.
  """
  source = IndexBatches(num_items, batch_size, process_count, seed=seed, shuffle=shuffle,
                        num_epochs=num_epochs, draw_flips=draw_flips)
  sampler = grain.samplers.IndexSampler(
      num_records=len(source),
      shard_options=grain.sharding.ShardOptions(
          shard_index=process_index, shard_count=process_count, drop_remainder=True),
      shuffle=False, num_epochs=1, seed=seed)
  return _data_loader(source, sampler, list(batch_ops), data_config, read_threads=0)
