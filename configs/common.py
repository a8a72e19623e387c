"""Defaults every task shares, and the parsing of `configs/<task>.py:ARG` variants.

A task config starts from `base_config()` and adds its own `model`, `data` and `optim`
keys. Command-line overrides (`--config.train.steps=100`) can only change keys that exist:
launch.py locks the config, so a misspelt key stops the run with its name.
"""

import os

import ml_collections

from geopose_jax.data import options as data_options


def default_data_dir() -> str:
  """Where datasets are built and read: $GEOPOSE_DATA_DIR, else the user's data folder."""
  if os.environ.get("GEOPOSE_DATA_DIR"):
    return os.environ["GEOPOSE_DATA_DIR"]
  base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
  return os.path.join(base, "geopose_jax", "datasets")


def base_config(task: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = task
  config.seed = 0
  # Another run's workdir (or a checkpoint folder in it) to start from; '' for none.
  config.init_from = ""

  config.train = ml_collections.ConfigDict()
  config.train.steps = 10_000
  config.train.batch_size = 32          # global, over all devices of all hosts
  config.train.log_every = 50           # metrics -> metrics.jsonl, TensorBoard, progress bar
  config.train.eval_every = 1_000       # 0: evaluate only at the end
  config.train.checkpoint_every = 1_000
  config.train.keep_checkpoints = 3     # >= 1
  # Train from step 0 in a workdir whose checkpoints are all unusable (moved aside).
  config.train.restart = False
  config.train.viz_every = 0            # 0: draw only at the end
  config.train.progress_bar = True
  # One malloc arena for all threads (geopose_jax/host_memory.py): faster steps whose
  # activations exceed 64 MiB (VideoPose3D at batch 256), slower compiling and small steps.
  config.train.one_malloc_arena = False

  # The keys every loader reads (geopose_jax/data/options.py says what each means); the
  # task sets `name` and adds its own.
  config.data = data_options.data_config(data_dir=default_data_dir())

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 64
  config.eval.max_examples = 0          # 0: the whole split
  # --mode=eval writes its tables here ('' : <workdir>/eval); for read-only archived runs.
  config.eval.output = ""

  config.viz = ml_collections.ConfigDict()
  config.viz.num_examples = 4
  config.viz.interactive = False
  return config


def keypoint_predict_config() -> ml_collections.ConfigDict:
  """The `predict` keys of a task that lifts 2D keypoints (`--mode=predict`, see
  geopose_jax/train/prediction.py and docs/KEYPOINT_FORMATS.md)."""
  return ml_collections.ConfigDict(dict(
      input="",              # keypoint file or OpenPose folder
      output="",             # folder to create (must not exist, or be empty)
      format="",             # '' detects it; else videopose3d|coco|halpe|openpose|mediapipe|array
      layout="",             # '' from the format; e.g. 'coco17' for a plain array file
      track_id=-1,           # person to follow; -1: the largest box in each frame
      width=0, height=0,     # image size in pixels for files without it (0: from the file)
      min_confidence=0.3,    # joints below it are interpolated over time
      fps=50.0,              # frame rate of the BVH, MP4 and GIF
      video=True,            # write render.mp4
      gif=True,              # write render.gif
  ))


def image_predict_config() -> ml_collections.ConfigDict:
  """The `predict` keys of a task that predicts from images (`--mode=predict` on a video or a
  folder of frames, see geopose_jax/train/image_prediction.py and docs/IMAGE_INPUT.md)."""
  return ml_collections.ConfigDict(dict(
      input="",              # video file or folder of frames (sorted by name)
      output="",             # folder to create (must not exist, or be empty)
      boxes="",              # per-frame person boxes: a box file (CSV/JSON) or keypoint file
      format="",             # boxes from a keypoint file: '' detects it; else as for keypoints
      layout="",             # boxes from a keypoint file: '' from the format
      track_id=-1,           # person to follow in a keypoint file; -1: the largest box
      min_confidence=0.3,    # keypoint file: joints below it do not shape the box
      max_box_gap=5,         # frames without a box in a gap up to this long are filled
      fps=0.0,               # BVH, MP4 and GIF frame rate; 0: the video's (25 for frames)
      video=True,            # write render.mp4
      gif=True,              # write render.gif
  ))


def add_protocol_eval_keys(eval_config: ml_collections.ConfigDict) -> None:
  """`config.eval` keys of evaluating through a dataset's own protocol, on the task's own
  data or on another dataset (cross-dataset); geopose_jax/protocol_eval.py reads them."""
  eval_config.dataset = ""             # '' (own data) | mpi_inf_3dhp | humaneva | h36m_poses
  eval_config.split = ""               # '' = the dataset's evaluation split (test / validate)
  eval_config.builder_config = ""      # '' = the dataset's default config
  eval_config.data_dir = ""            # '' = config.data.data_dir
  eval_config.manual_dir = ""          # the licensed files; '' = <data_dir>/downloads/manual
  eval_config.mpi3dhp_grouping = "all17"     # all17 | no_torso14
  eval_config.mpi3dhp_target = "univ_annot3"  # univ_annot3 | annot3


def optim_config(lr: float, *, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0,
                 amsgrad: bool = False, lr_decay: float = 1.0,
                 frozen: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """The `optim` (and `disc_optim`) keys every task shares; see geopose_jax/train/optim.py.

  `frozen`: regular expressions over '/'-joined parameter paths ('encoder/layer1/.*')
  whose parameters are not trained; a task adds the ones its method always freezes.
  """
  return ml_collections.ConfigDict(dict(
      lr=float(lr), b1=float(b1), b2=float(b2), weight_decay=float(weight_decay),
      amsgrad=bool(amsgrad), lr_decay=float(lr_decay), frozen=tuple(frozen)))


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses `configs/x.py:ARG`: `demo`, `h36m`, or `key=value,key2=value2` pairs.

  Each name in `defaults` is a recognised variant flag (default False) or a keyword with a
  default value; a bare word sets that flag to True. Unknown words fail with their name.
  """
  parsed = ml_collections.ConfigDict(dict(defaults))
  for word in (arg or "").split(","):
    word = word.strip()
    if not word:
      continue
    key, _, value = word.partition("=")
    if key not in parsed:
      raise ValueError(f"unknown config variant {key!r}; known: {sorted(parsed.keys())}")
    if not value:
      parsed[key] = True
    else:
      kind = type(parsed[key])
      parsed[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
  return parsed
