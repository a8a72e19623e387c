"""Stage 1 of Rhodin et al. 2018: novel-view synthesis on multi-view video, no 3D labels.

  python launch.py --config=configs/nvs.py            # the paper's network and losses
  python launch.py --config=configs/nvs.py:demo       # small network at 64x64, 4000 steps (~10 min
                                                      # on 2 idle CPU cores, more when shared)
  python launch.py --config=configs/nvs.py:h36m       # Human3.6M (dataset h36m_multiview)

ImageNet weights are optional: --config.model.encoder_weights=<torchvision resnet50 .pth>
and --config.model.perceptual_weights=<torchvision resnet18 .pth>. Without them the encoder
starts from scratch and the perceptual loss uses a frozen randomly initialised ResNet-18
(--config.loss.perceptual_without_weights=off drops the term).

--config.init_from starts from an nvs run's workdir or from Rhodin et al.'s
network_best_val_t1.pth (the paper's network).
"""

import ml_collections

from configs import common

# The paper's network; mirrors geopose_jax.models.nvs.PAPER_CONFIG (kept here as plain
# values so that configs import without JAX).
PAPER_NET = dict(
    encoder_depth=(3, 4, 6), width=64, block="bottleneck", layer4_reg_blocks=3,
    to_vec_channels=(512, 128), to_vec_padded=False, bottleneck_num_latent_points=200,
    appearance_dim=128, decoder_channels=(32, 64, 128, 256), dropout=0.3, image_size=128,
    frozen_stem_batch_stats=False)

# The encoder layers the original freezes in stage 1 (sensible with ImageNet weights; from
# scratch those layers stay random, which still trains, but slower): optim.frozen patterns.
STAGE1_FROZEN = ("encoder/conv1/.*", "encoder/bn1/.*", "encoder/layer1/.*", "encoder/layer2/.*")

# A narrow, shallow network at 64x64 for CPU demos: same structure, fewer channels
# (thinnest at full resolution, where a decoder spends most of its time).
DEMO_NET = dict(
    encoder_depth=(1, 1, 1), width=16, block="bottleneck", layer4_reg_blocks=1,
    to_vec_channels=(64, 64), to_vec_padded=True, bottleneck_num_latent_points=200,
    appearance_dim=32, decoder_channels=(8, 16, 48, 96), dropout=0.3, image_size=64,
    frozen_stem_batch_stats=False)


def model_config(net: dict) -> ml_collections.ConfigDict:
  model = ml_collections.ConfigDict()
  model.net = ml_collections.ConfigDict(net)
  # Optional torchvision checkpoints (ImageNet weights); '' = none.
  model.encoder_weights = ""
  model.perceptual_weights = ""
  return model


def data_config(config: ml_collections.ConfigDict, dataset: str) -> None:
  config.data.name = dataset
  config.data.train_subjects = ("S1", "S5", "S6", "S7", "S8")
  config.data.test_subjects = ("S9", "S11")
  config.data.every_nth_frame = 1


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False, h36m=False)
  config = common.base_config("nvs")
  data_config(config, "h36m_multiview" if variant.h36m else "synthetic_multiview")
  config.model = model_config(PAPER_NET)

  config.loss = ml_collections.ConfigDict()
  config.loss.l1_weight = 1.0
  config.loss.perceptual_weight = 2.0
  # Without model.perceptual_weights: 'random' (frozen random ResNet-18) or 'off'.
  config.loss.perceptual_without_weights = "random"
  # The loss network's max-pooling after conv1 (the original's do_maxpooling, on in its
  # published configuration); False compares layer1 and layer2 at twice the resolution.
  config.loss.perceptual_maxpool = True

  config.optim = common.optim_config(1e-3, frozen=STAGE1_FROZEN)

  config.train.batch_size = 32            # 8 groups of [t a, t b, t' c, t' d]
  config.train.steps = 400_000
  config.train.eval_every = 5_000
  config.train.checkpoint_every = 5_000
  config.train.viz_every = 5_000
  config.train.log_every = 100
  config.eval.batch_size = 32
  config.eval.max_examples = 2_048

  config.viz.num_examples = 4             # test images in the grid and the sweeps
  config.viz.sweep_angles = 37            # -180..180 degrees in 10-degree steps
  config.viz.sweeps = 2                   # how many of the examples get a GIF sweep

  if variant.demo:
    config.model = model_config(DEMO_NET)
    # From scratch on a CPU: train the whole encoder and drop the perceptual term (a
    # random ResNet-18 would cost ~3x the rest of the step for little gain).
    config.optim.frozen = ()
    config.loss.perceptual_without_weights = "off"
    config.train.batch_size = 16
    # Measured on 2 idle CPU cores: ~7 steps/s; the L1 loss falls from ~0.44 to ~0.09 in the
    # first 1000 steps; the synthesised body takes the orientation of the sweep from ~3000
    # steps on (at 2500 it is a blur that barely turns).
    config.train.steps = 4000
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 1000
    config.train.viz_every = 0
    config.eval.batch_size = 32
    config.eval.max_examples = 256
    config.viz.sweep_angles = 25
  return config
