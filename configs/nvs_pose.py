"""Stage 2 of Rhodin et al. 2018: 3D pose from the frozen NVS latent with few labels.

  python launch.py --config=configs/nvs_pose.py --config.init_from=runs/nvs/<run>
  python launch.py --config=configs/nvs_pose.py:demo --config.init_from=runs/nvs/<demo run>
  python launch.py --config=configs/nvs_pose.py:supervised         # baseline, no NVS
  python launch.py --config=configs/nvs_pose.py:demo --config.init_from=... \\
      --workdir=runs/nvs_pose/<run> --mode=eval                      # metrics table + JSON

Labels: --config.data.label_subjects='("S1",)' (default; '()' = every training subject)
and --config.data.label_fraction=0.1 (a random, seeded fraction of those frames).
--config.init_from takes an nvs run, an nvs_pose run or Rhodin et al.'s
network_best_val_t1.pth; with a run, model.net is read from its config.json.
"""

import ml_collections

from configs import common
from configs import nvs as nvs_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False, h36m=False, supervised=False)
  config = common.base_config("nvs_pose")
  nvs_config.data_config(config, "h36m_multiview" if variant.h36m else "synthetic_multiview")
  config.data.label_subjects = ("S1",)
  config.data.label_fraction = 1.0
  config.data.label_seed = 0

  config.model = nvs_config.model_config(
      nvs_config.DEMO_NET if variant.demo else nvs_config.PAPER_NET)
  config.model.supervised = bool(variant.supervised)
  # The original left the frozen encoder's BatchNorm in train mode; True reproduces that.
  config.model.encoder_bn_train_mode = False
  config.model.head_hidden = 2048
  config.model.head_layers = 2
  config.model.head_dropout = 0.5

  # The method's frozen parts (the NVS network; supervised, its decoder) are added to
  # optim.frozen when the run starts (see config.json).
  config.optim = common.optim_config(1e-3)

  config.train.batch_size = 32
  config.train.steps = 20_000
  config.train.eval_every = 2_000
  config.train.checkpoint_every = 2_000
  config.train.log_every = 100
  config.eval.batch_size = 64
  config.eval.max_examples = 0

  config.predict = common.image_predict_config()   # --mode=predict on a video / frames
  config.viz.num_examples = 4
  config.viz.sweep_angles = 37
  config.viz.sweeps = 2

  if variant.demo:
    config.model.head_hidden = 512
    config.train.steps = 600
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 600
    config.eval.batch_size = 64
    config.viz.sweep_angles = 25
  return config
