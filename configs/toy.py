"""Tiny regression that exercises the loop: `python launch.py --config=configs/toy.py`."""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False)
  config = common.base_config("toy")
  config.train.steps = 300
  config.train.batch_size = 32
  config.train.log_every = 10
  config.train.eval_every = 100
  config.train.checkpoint_every = 100
  config.model = ml_collections.ConfigDict({"hidden": 32})
  config.optim = common.optim_config(lr=1e-2)
  config.data.num_train = 2048
  config.data.num_test = 256
  config.data.dim = 8
  config.data.seed = 0
  if variant.demo:
    config.train.steps = 60
  return config
