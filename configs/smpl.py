r"""SMPL (theta, beta) from the frozen NVS latent (the SMPL-from-latent method, METHODS.md §3).

    python launch.py --config=configs/smpl.py --config.init_from=runs/nvs/<run> \
        --config.prior_from=runs/smpl_prior/<run>
    python launch.py --config=configs/smpl.py:demo --config.init_from=<nvs demo run> \
        --config.prior_from=<smpl_prior demo run>            # minutes on a 2-core CPU
    python launch.py --config=configs/smpl.py --config.body.model_path=SMPL_NEUTRAL.pkl ...

Without body.model_path the procedural SMPL-format body (geopose_jax/body/procedural.py, NOT
SMPL) stands in for the licence-gated model. With init_from, model.net is read from the NVS
run's config.json. Variants (combine with commas): demo, h36m, original (the original's
Tanh axis-angle head, the prior also judging the global orientation).
"""

import ml_collections

from configs import common
from configs import nvs as nvs_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False, h36m=False, original=False)
  config = common.base_config("smpl")
  nvs_config.data_config(config, "h36m_multiview" if variant.h36m else "synthetic_multiview")
  config.data.label_subjects = ("S1",)           # the original trains on S1 only
  config.data.label_fraction = 1.0
  config.data.label_seed = 0
  # An smpl_prior run's workdir: its discriminator, frozen, is the adversarial prior.
  config.prior_from = ""

  config.body = ml_collections.ConfigDict()
  config.body.model_path = ""                    # SMPL .pkl / .npz; '' = procedural body
  config.body.num_betas = 10
  config.body.detail = 1.0                       # procedural body resolution

  config.model = nvs_config.model_config(
      nvs_config.DEMO_NET if variant.demo else nvs_config.PAPER_NET)
  config.model.width = 1024
  config.model.trunk_layers = 4
  config.model.pose_rep = "tanh_axis_angle" if variant.original else "rotation_6d"
  config.model.use_appearance = True

  config.loss = ml_collections.ConfigDict()
  config.loss.joints = 1.0                       # mean per-joint error (mm), 13 joints
  config.loss.prior = 10.0                       # BCE of the frozen prior's score
  config.loss.silhouette = 1.0                   # BCE of soft silhouettes vs masks, 4 views
  config.loss.silhouette_start = 1000            # step from which silhouettes count
  config.loss.silhouette_size = 128              # masks pooled to this size for rendering
  config.loss.silhouette_sigma = 0.3             # edge softness, squared pixels
  config.loss.chunk_size = 1                     # silhouettes rendered at once

  config.optim = common.optim_config(1e-4)

  config.train.batch_size = 64
  config.train.steps = 20_000
  config.train.eval_every = 2_000
  config.train.checkpoint_every = 2_000
  config.eval.batch_size = 32
  config.predict = common.image_predict_config()   # --mode=predict on a video / frames
  config.viz.num_examples = 3

  if variant.demo:
    config.body.detail = 0.4
    config.model.width = 256
    config.model.trunk_layers = 2
    config.optim.lr = 1e-3
    config.loss.silhouette_start = 150
    config.loss.silhouette_size = 32
    config.loss.silhouette_sigma = 0.2
    config.train.batch_size = 16
    config.train.steps = 300
    config.train.log_every = 25
    config.train.eval_every = 150
    config.train.checkpoint_every = 300
    config.eval.batch_size = 16
    config.eval.max_examples = 128
  return config
