"""RIE (Shan et al. 2021) and the VideoPose3D baseline on `h36m_poses`.

  python launch.py --config=configs/rie.py --workdir=runs/rie1                       # stage 1
  python launch.py --config=configs/rie.py --config.stage=2 \\
      --config.init_from=runs/rie1 --workdir=runs/rie2                               # stage 2
  python launch.py --config=configs/rie.py --config.stage=3 \\
      --config.init_from=runs/rie2 --workdir=runs/rie3                               # stage 3
  python launch.py --config=configs/rie.py:tcn                                       # VideoPose3D

Variants (`configs/rie.py:ARG`, comma-separated): `demo` (receptive field 27, small widths,
minutes on 2 CPU cores), `tcn` (the VideoPose3D temporal model), `cpn` (latent_dim 512, the
original's setting for detected 2D), `h36m` (the VideoPose3D .npz files from the manual folder),
`humaneva` (HumanEva-I's 15 joints, receptive field 27; P1/P2 per action and subject).
Cross-dataset evaluation of a trained run (the dataset built from --config.eval.manual_dir):

  python launch.py --config=configs/rie.py --workdir=runs/rie1 --mode=eval \
      --config.eval.dataset=mpi_inf_3dhp --config.eval.manual_dir=DIR   # or humaneva
An original checkpoint file (RIE's gt_pretrained.bin / cpn_pretrained.bin, a VideoPose3D .bin;
read without PyTorch) can be given as --config.init_from. With --config.train.steps=0 the
run imports it, saves it as step 0 and evaluates it; `--mode=eval` re-evaluates that workdir:

  python launch.py --config=configs/rie.py --config.stage=3 \
      --config.init_from=gt_pretrained.bin --config.train.steps=0 \
      --config.data.npz_3d=data_3d_h36m.npz --config.data.npz_2d=data_2d_h36m_gt.npz
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False, tcn=False, cpn=False, h36m=False,
                             humaneva=False)
  config = common.base_config("rie")
  config.stage = 1                       # 1 | 2 | 3 (RIE only)

  config.model = ml_collections.ConfigDict()
  config.model.name = "rie"              # 'rie' | 'tcn' (VideoPose3D)
  config.model.filter_widths = "3,3,3,3,3"   # receptive field = product = 243
  config.model.channels = 256            # temporal convolution width (tcn: 1024)
  config.model.latent_dim = 256          # L: 256 with ground-truth 2D, 512 with detected 2D
  config.model.fc_hidden = 1024          # width of the global/fusion/decoder MLPs
  config.model.dropout = 0.2             # temporal convolutions (tcn: 0.25)
  config.model.fc_dropout = 0.25         # MLPs
  config.model.causal = False
  config.model.num_joints = 17           # 17 (H36M order) | 15 (HumanEva-I)

  # lr 0: the stage's default (1e-3; stage 3 fine-tunes at 5e-4, as the original); AdamW
  # with AMSGrad, weight decay 0.01, x0.95 per epoch. Stage 2 adds its encoders to frozen.
  config.optim = common.optim_config(lr=0.0, weight_decay=0.01, amsgrad=True, lr_decay=0.95)
  config.optim.bn_momentum_start = 0.1   # PyTorch convention; decays exponentially per epoch
  config.optim.bn_momentum_end = 0.001
  config.optim.steps_per_epoch = 0       # 0: the original's epoch (each frame, flipped and not)
  config.optim.freeze_batch_stats = False  # stage 2: frozen encoders' BatchNorm in inference mode

  config.data.name = "h36m_poses"
  config.data.builder_config = "synthetic"  # synthetic | synthetic_noisy | npz | cdf
  config.data.manual_dir = ""            # licence-gated sources (default <data_dir>/downloads/manual)
  config.data.npz_3d = ""                # VideoPose3D data_3d_h36m.npz (any path)
  config.data.npz_2d = ""                # VideoPose3D data_2d_h36m_*.npz (any path)
  config.data.flip = True                # flip augmentation while training
  config.data.shuffle_seed = 0

  config.train.batch_size = 1024
  # 80 of the original's epochs (every frame flipped and not, batch 1024): the synthetic
  # default (h36m_poses/synthetic 2.1.0) has 512,148 training camera frames, so
  # ceil(2 * 512,148 / 1024) = 1,001 steps per epoch; Human3.6M 1.56 M (3,047).
  config.train.steps = 80 * 1_001
  config.train.log_every = 100
  config.train.eval_every = 2_000
  config.train.checkpoint_every = 2_000

  config.eval.batch_size = 1024
  config.eval.splits = ("test",)
  config.eval.test_time_flip = True
  config.eval.frame_stride = 1           # evaluate every n-th frame (1: all, the protocol)
  common.add_protocol_eval_keys(config.eval)   # eval.dataset: evaluate on another dataset

  config.viz.split = "test"
  config.viz.subject = "S11"
  config.viz.action = "walking"  # the synthetic default's action names (vocab.LIBRARY_ACTIONS)
  config.viz.camera = 0
  config.viz.downsample = 2
  config.viz.max_frames = 60
  config.viz.fps = 12.5
  config.predict = common.keypoint_predict_config()   # --mode=predict

  if variant.cpn:
    config.model.latent_dim = 512
    config.data.builder_config = "synthetic_noisy"
  if variant.h36m:
    config.data.builder_config = "npz"
    config.train.steps = 80 * 3_047
  if variant.humaneva:
    humaneva_config(config)
  if variant.tcn:
    config.model.name = "tcn"
    config.model.channels = 1024
    config.model.dropout = 0.25
    config.train.one_malloc_arena = not variant.demo  # 85 MB activations at batch 256
  if variant.demo:
    config.model.filter_widths = "3,3,3"
    config.model.channels = 512 if variant.tcn else 64   # ~2.2 M vs RIE's 2.5 M parameters
    config.model.latent_dim = 64
    config.model.fc_hidden = 256
    config.train.batch_size = 256
    config.train.steps = 600
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 300
    config.optim.steps_per_epoch = 60   # ten short epochs, so both schedules play out
    # Stage 2 with its encoders entirely frozen (inference-mode BatchNorm and dropout): at this
    # short budget it beats the original's train-mode encoders (stage-2 P1 81.5 vs 87.2 mm).
    config.optim.freeze_batch_stats = True
    config.eval.batch_size = 512
    config.eval.frame_stride = 4
    if config.data.builder_config.startswith("synthetic"):
      # The training subjects' held-out frames: test/heldout MPJPE tells new people and
      # motion from new frames of known ones.
      config.eval.splits = ("test", "heldout")
    config.viz.max_frames = 30
  return config


def humaneva_config(config: ml_collections.ConfigDict) -> None:
  """HumanEva-I (Walk, Jog, Box of S1-S3; `python -m data_prep.build humaneva`): 15 joints,
  RIE's 15-joint body parts, a 27-frame receptive field as VideoPose3D uses on this small
  dataset, its lr decay of 0.996 per epoch, evaluated on the Validate chunks."""
  config.model.num_joints = 15
  config.model.filter_widths = "3,3,3"
  config.data.name = "humaneva"
  config.data.builder_config = ""        # walk_jog_box (all_actions: also ThrowCatch, Gestures)
  config.optim.lr_decay = 0.996
  config.train.steps = 20_000
  config.eval.splits = ("validate",)
  config.viz.split = "validate"
  config.viz.subject = "S1"
  config.viz.action = "Walk"
