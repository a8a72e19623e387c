"""The keys of `config.data` that every loader reads, in one place.

Loaders take `config.data` for what identifies the dataset and how to read it, and their
own options as arguments (`every_nth_frame`, `frame_step`, `labels`, ...). `data_config`
builds a `config.data` with every shared key, so that a task config, a cross-dataset
evaluation, a test or a benchmark hands the loaders the same set of keys.
"""

from __future__ import annotations

from typing import Any

import ml_collections

# key -> default, with what it means.
DATA_KEYS: dict[str, Any] = {
    "name": "",             # the TFDS dataset (h36m_poses, synthetic_multiview, ...)
    "data_dir": "",         # where datasets are built and read
    "builder_config": "",   # '' = the dataset's default config
    "manual_dir": "",       # licence-gated sources; '' = <data_dir>/downloads/manual
    "npz_3d": "",           # h36m_poses from VideoPose3D-format files (any path)
    "npz_2d": "",
    # Subjects kept of the train / test split; () = every subject the split holds. Other
    # splits (heldout, validate) are read whole (sources.split_subjects).
    "train_subjects": (),
    "test_subjects": (),
    "num_workers": 0,       # Grain worker processes (0: decode in the main process)
    "prefetch": 2,          # batches each worker keeps ready
    "read_threads": 4,      # threads decoding records ahead of batching, per process
}


def data_config(**keys: Any) -> ml_collections.ConfigDict:
  """A `config.data` with every key of DATA_KEYS (defaults overridden by `keys`); a task
  adds its own keys after."""
  values = dict(DATA_KEYS)
  values.update(keys)
  return ml_collections.ConfigDict(values)
