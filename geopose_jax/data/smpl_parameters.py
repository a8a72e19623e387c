"""SMPL parameters per frame, read from a built `smpl_params` dataset (the pose prior's data)."""

from __future__ import annotations

import ml_collections
import numpy as np

from geopose_jax.data import sources
from geopose_jax.errors import ConfigError


def load_parameters(data_config: ml_collections.ConfigDict, split: str,
                    num_betas: int) -> dict[str, np.ndarray]:
  """The split's theta (N, 72) and beta (N, num_betas) float32, building the dataset if needed."""
  builder = sources.open_dataset(data_config)
  reader = sources.reader_for(builder, split)
  records = [reader.parse(i) for i in range(len(reader))]
  theta = np.stack([np.asarray(r["theta"]) for r in records]).astype(np.float32)
  beta = np.stack([np.asarray(r["beta"]) for r in records]).astype(np.float32)
  if num_betas > beta.shape[1]:
    raise ConfigError(f"config.model.num_betas={num_betas} but {sources.dataset_name(data_config)} "
                      f"has {beta.shape[1]} betas")
  return {"theta": theta, "beta": beta[:, :num_betas]}
