r"""Adversarial SMPL pose prior (the GAN of the SMPL-from-latent method, METHODS.md §3).

    python launch.py --config=configs/smpl_prior.py                 # the CMU motion library
    python launch.py --config=configs/smpl_prior.py:demo            # minutes on a 2-core CPU
    python launch.py --config=configs/smpl_prior.py:surreal \
        --config.data.manual_dir=/path/to/surreal/cmu               # SURREAL *_info.mat

Variants (combine with commas): demo, surreal, original (the discriminator also judges the
global orientation, as the original did).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False, surreal=False, original=False)
  config = common.base_config("smpl_prior")

  config.data.name = "smpl_params"
  config.data.builder_config = "surreal" if variant.surreal else "cmu"
  config.data.manual_dir = ""                    # SURREAL's folder for :surreal

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 20
  config.model.generator_hidden = 256
  config.model.disc_features = 1024
  config.model.num_betas = 10
  config.model.include_global = bool(variant.original)

  config.optim = common.optim_config(lr=1e-3, b1=0.5)        # the generator
  config.disc_optim = common.optim_config(lr=1e-3, b1=0.5)   # the discriminator

  config.train.batch_size = 64
  config.train.steps = 20_000
  config.train.eval_every = 2_000
  config.train.checkpoint_every = 2_000
  config.eval.batch_size = 256

  if variant.demo:
    config.model.disc_features = 256
    config.train.steps = 400
    config.train.log_every = 50
    config.train.eval_every = 200
    config.train.checkpoint_every = 400
    config.eval.max_examples = 512
  return config
