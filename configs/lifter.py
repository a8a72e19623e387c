r"""Self-supervised 2D -> 3D lifter (Chen et al. CVPR 2019).

    python launch.py --config=configs/lifter.py                   # paper-sized, synthetic data
    python launch.py --config=configs/lifter.py:demo              # minutes on a 2-core CPU
    python launch.py --config=configs/lifter.py:demo,supervised   # same lifter from 3D labels
    python launch.py --config=configs/lifter.py:wgan              # WGAN-GP instead of BCE
    python launch.py --config=configs/lifter.py --workdir=runs/l --mode=eval \
        --config.data.npz_2d=data_2d_h36m_gt.npz --config.data.npz_3d=data_3d_h36m.npz
    python launch.py --config=configs/lifter.py:adapter --config.init_from=runs/l \
        --workdir=runs/adapt                                      # 2D domain adapter

Variants (combine with commas): demo, supervised, wgan, humaneva (HumanEva-I's 15 joints,
`python -m data_prep.build humaneva`, P1/P2 per action and subject), adapter (the 2D domain
adapter in front of the frozen lifter of `init_from`: the task `lifter_adapter`, which takes
the lifter's model settings from that run).
Cross-dataset evaluation of a trained run: --mode=eval --config.eval.dataset=mpi_inf_3dhp
(or humaneva) --config.eval.manual_dir=DIR writes eval/mpi_inf_3dhp_test.json and .md.
Evaluation uses the test split's `data.test_subjects` (S9, S11); the metrics are P-MPJPE
(Procrustes with scale: the primary one, since scale is unobservable), N-MPJPE (after the
least-squares scale), MPJPE (with one body size, `eval.body_scale_mm`), PCK@150 mm and AUC
on that, per action and overall, each root-centred; see geopose_jax/evaluation.py.
"""

import math

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_arg(arg, demo=False, supervised=False, wgan=False, adapter=False,
                             humaneva=False)
  config = common.base_config("lifter_adapter" if variant.adapter else "lifter")
  config.supervised = bool(variant.supervised)   # the 3D-labelled reference

  config.model = ml_collections.ConfigDict()
  config.model.features = 1024
  config.model.num_blocks = 4
  config.model.dropout = 0.5
  config.model.depth_offset = 10.0             # c: 2D scaled to mean root distance 1/c
  config.model.num_joints = 17                 # 17 (H36M order) | 15 (HumanEva-I)

  config.disc = ml_collections.ConfigDict()    # pose and temporal discriminators
  config.disc.features = 1024
  config.disc.num_blocks = 3
  config.disc.dropout = 0.0                    # the unofficial code uses 0.5

  config.loss = ml_collections.ConfigDict()
  config.loss.gan = "wgan_gp" if variant.wgan else "standard"
  config.loss.adv = 1.0
  config.loss.cycle_2d = 10.0
  config.loss.cycle_3d = 0.001
  config.loss.temporal = 1.0
  config.loss.gp = 10.0                        # WGAN-GP lambda
  config.loss.normalize_fake_2d = True         # discriminators see synthetic views normalised

  config.rotation = ml_collections.ConfigDict()
  config.rotation.azimuth_range = (-math.pi, math.pi)
  config.rotation.elevation_range = (-math.pi / 9, math.pi / 9)
  config.rotation.vertical_axis = "y"          # camera y (down) is vertical in H36M cameras
  # Radians the cameras look down: Human3.6M's (and so the synthetic default's) look down by
  # 11-16 degrees; 0 turns the body about the camera's y axis, as the paper does.
  config.rotation.camera_pitch = 0.22
  config.rotation.pivot = "root"               # 'root' (lifted root) or 'fixed' ((0, 0, c))

  config.optim = common.optim_config(lr=1e-4)        # the lifter
  config.disc_optim = common.optim_config(lr=1e-4)   # both discriminators

  config.train.batch_size = 1024
  config.train.steps = 100_000
  config.train.gan_update = "joint"            # 'joint' or 'alternate' (D on even, L on odd)
  config.train.eval_every = 5_000
  config.train.checkpoint_every = 5_000

  config.data.name = "h36m_poses"
  config.data.builder_config = ""              # '' = the dataset's default (synthetic)
  config.data.npz_2d = ""                      # VideoPose3D-format .npz files to evaluate on
  config.data.npz_3d = ""
  config.data.manual_dir = ""                  # licence-gated sources; "": default folder
  config.data.train_subjects = ()              # () = every subject of the train split
  config.data.test_subjects = ("S9", "S11")
  config.data.frame_step = 1                   # gap between a frame and its "next" frame

  config.eval.batch_size = 1024
  # mm per unit of the (scale-free) lifted pose: the mean joint-to-root distance of the
  # H36M-17 skeleton of the synthetic default's training subjects (437 mm).
  config.eval.body_scale_mm = 437.0
  if not variant.adapter:
    common.add_protocol_eval_keys(config.eval)  # eval.dataset: evaluate on another dataset
  config.viz.num_examples = 4
  config.viz.gif_frames = 24                   # frames of the turning-skeleton GIF
  config.predict = common.keypoint_predict_config()   # --mode=predict

  if variant.demo:
    config.model.features = 256
    config.model.num_blocks = 2
    config.disc.features = 256
    config.disc.num_blocks = 2
    config.model.dropout = 0.1
    config.optim.lr = 1e-3
    config.disc_optim.lr = 1e-3
    config.rotation.elevation_range = (-math.pi / 18, math.pi / 18)
    config.train.batch_size = 256
    config.train.steps = 3_000
    config.train.log_every = 50
    config.train.eval_every = 1_000
    config.train.checkpoint_every = 1_000
  if variant.humaneva:
    config.model.num_joints = 15
    config.data.name = "humaneva"
    config.data.builder_config = ""            # walk_jog_box
    del config.data.test_subjects              # HumanEva is scored on its Validate chunks
  if variant.adapter:
    adapter_config(config)
  return config


def adapter_config(config: ml_collections.ConfigDict) -> None:
  """The 2D domain adapter: maps 2D poses of another domain (another detector, other
  cameras) into the training 2D distribution, adversarially, in front of the frozen lifter
  of `config.init_from` (whose model.* settings the task adopts)."""
  del config.disc                               # the lifter's discriminators are not used
  config.adapter = ml_collections.ConfigDict()
  config.adapter.source_builder_config = "synthetic_noisy"   # h36m_poses config of the domain
  config.adapter.source_npz_2d = ""            # or VideoPose3D-format files of the domain
  config.adapter.source_npz_3d = ""            # (3D only for its evaluation)
  config.adapter.features = 256
  config.adapter.num_blocks = 2
  config.adapter.identity = 10.0               # weight of ||A(x) - x||^2 (body units)
  config.optim = common.optim_config(lr=1e-4)        # the adapter
  config.disc_optim = common.optim_config(lr=1e-4)   # its discriminator
  config.loss = ml_collections.ConfigDict({"gan": config.loss.gan, "gp": config.loss.gp})
  del config.rotation, config.supervised, config.train.gan_update
