"""`h36m_multiview`: multi-view records of the raw Human3.6M release.

One record per (subject, sequence, sampled frame) with all four cameras, in the layout of
the synthetic default (data_prep/synthetic_multiview), so both decode identically:
images / backgrounds (4, 128, 128, 3) uint8 (PNG), masks (4, 128, 128) {0, 1}, R, t, K,
pose_3d_world (17, 3) mm, pose_3d_cam (4, 17, 3) mm, pose_2d_px (4, 17, 2) distorted
full-image pixels, pose_2d_crop (4, 17, 2), subject, action (canonical), sequence (the
pose file's name, e.g. "Walking 1": sub-actions stay separate sequences), frame (the
50 fps index). Human3.6M adds `has_masks` (4,) bool: False where the release has no
foreground mask for the view (its mask is all zeros).

How a record is made (see framing.py, examples.py, background.py):
- poses: MyPoseFeatures/D3_Positions/*.cdf (world mm, 32 joints -> 17);
- frames: every `frame_step`-th frame of the 50 fps videos (5: 10 fps), decoded with PyAV;
- crops: the synthetic default's framing (a square box centred on the projected root,
  side from the projected joints plus a body radius; K the crop's pinhole intrinsics),
  resampled to 128 x 128 through the real lens model, so the crops are undistorted and
  K X lands on the body. Videos of another size than the calibration are treated as
  scaled copies of it (framing.py);
- backgrounds: per subject and camera, the per-pixel median over every
  `background_every`-th frame of all that subject's videos of that camera, cropped with
  each record's box;
- masks: MySegmentsMat/ground_truth_bs/*.mat (MATLAB v7.3 / HDF5) when present.
Naming variants of the release (TakingPhoto/Photo, WalkingDog/WalkDog, sub-action numbers)
are matched; S11 "Directions", whose video is broken in the release, is skipped.
Splits: train = S1, S5, S6, S7, S8; test = S9, S11 (configurable, see `make_config`).

Building reads every video twice (backgrounds, then records), in `num_workers` processes
(one sequence, or one camera's background, each). The background samples of one subject
and camera are spooled to the temporary folder ($TMPDIR): a few GB each at full
resolution, one per busy worker. Every pose file, video header and mask file is checked
before the first record is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import multiprocessing
import os
import pathlib
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.h36m_multiview import background
from data_prep.h36m_multiview import examples
from data_prep.h36m_multiview import framing
from data_prep.h36m_multiview import layout
from data_prep.h36m_multiview import media
from data_prep.synthetic_multiview import features as multiview_record
from geopose_jax.data import vocab
from geopose_jax.geometry import cameras as cameras_lib

_LOG = logging.getLogger(__name__)

NAME = "h36m_multiview"
DEFAULT_FRAME_STEP = 5


@dataclasses.dataclass(eq=False)
class H36mMultiviewConfig(tfds.core.BuilderConfig):
  """How the raw release is sampled and split.

  Attributes:
    frame_step: keep every this many 50 fps frames (5 = 10 fps).
    background_every: sample every this many frames for the median backgrounds.
    train_subjects, test_subjects: the subjects of each split.
  """
  frame_step: int = DEFAULT_FRAME_STEP
  background_every: int = background.BACKGROUND_EVERY
  train_subjects: tuple[str, ...] = vocab.TRAIN_SUBJECTS
  test_subjects: tuple[str, ...] = vocab.TEST_SUBJECTS


def make_config(frame_step: int = DEFAULT_FRAME_STEP,
                background_every: int = background.BACKGROUND_EVERY,
                train_subjects: Sequence[str] = vocab.TRAIN_SUBJECTS,
                test_subjects: Sequence[str] = vocab.TEST_SUBJECTS) -> H36mMultiviewConfig:
  """A config for other sampling or splits; its name says what differs from the default.

  Raises:
    ValueError: an unknown subject, a subject in both splits, or a step below 1.
  """
  train, test = tuple(train_subjects), tuple(test_subjects)
  unknown = [s for s in train + test if s not in vocab.SUBJECTS]
  if unknown:
    raise ValueError(f"unknown subject(s) {unknown} for h36m_multiview; Human3.6M subjects "
                     f"are {vocab.SUBJECTS}")
  both = sorted(set(train) & set(test))
  if both:
    raise ValueError(f"subject(s) {both} are in both the train and the test split")
  if not train + test:
    raise ValueError("h36m_multiview needs at least one subject")
  for name, value in (("frame_step", frame_step), ("background_every", background_every)):
    if int(value) < 1:
      raise ValueError(f"h36m_multiview {name} must be >= 1, got {value}")
  if (frame_step, background_every, train, test) == (
      DEFAULT_FRAME_STEP, background.BACKGROUND_EVERY, vocab.TRAIN_SUBJECTS,
      vocab.TEST_SUBJECTS):
    return Builder.BUILDER_CONFIGS[0]
  split_id = hashlib.sha256(f"{train}|{test}".encode()).hexdigest()[:8]
  name = f"step{frame_step}_bg{background_every}_split{split_id}"
  return H36mMultiviewConfig(
      name=name, description=f"every {frame_step}th frame; backgrounds from every "
      f"{background_every}th; train {list(train)}, test {list(test)}",
      frame_step=int(frame_step), background_every=int(background_every),
      train_subjects=train, test_subjects=test)


def record_features() -> tfds.features.FeaturesDict:
  """The synthetic default's multi-view record features plus `has_masks`."""
  fields = dict(multiview_record.multiview_features(framing.CROP_SIZE).items())
  fields["has_masks"] = tfds.features.Tensor(
      shape=(examples.NUM_VIEWS,), dtype=np.bool_,
      doc="False where the release has no foreground mask for the view (mask all zeros)")
  return tfds.features.FeaturesDict(fields)


class Builder(array_record_builder.ArrayRecordBuilder):
  """Multi-view crops, backgrounds, masks and poses of the raw Human3.6M release."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [H36mMultiviewConfig(
      name="default", description="10 fps (every 5th frame); train S1 S5 S6 S7 S8, "
      "test S9 S11.")]
  DEFAULT_CONFIG_NAME = "default"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Human3.6M is licence-gated: register at http://vision.imar.ro/human3.6m, accept the
  licence and download, for each subject you want (S1, S5, S6, S7, S8, S9, S11), the
  "Poses / D3_Positions", "Videos" and (optional) "Segments / MySegmentsMat" archives.
  Extract them all into one folder so that it holds
    S1/MyPoseFeatures/D3_Positions/Walking 1.cdf
    S1/Videos/Walking 1.54138969.mp4        (all four cameras)
    S1/MySegmentsMat/ground_truth_bs/Walking 1.54138969.mat   (optional)
  and give that folder as the manual folder:
    python -m data_prep.build h36m_multiview --manual_dir /path/to/h36m
  Building needs the `[h36m]` extra (pip install -e '.[h36m]': av, cdflib, h5py).
  """

  def __init__(self, *, num_workers: int | None = None, **kwargs):
    """num_workers: processes decoding and cropping sequences in parallel (0: in this one;
    default: up to 4, one per core)."""
    if num_workers is None:
      num_workers = min(4, os.cpu_count() or 1)
    if num_workers < 0:
      raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    self._num_workers = int(num_workers)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=record_features(),
                                 homepage="http://vision.imar.ro/human3.6m")

  def _split_generators(self, dl_manager):
    media.require_packages()
    config = self.builder_config
    try:
      root = pathlib.Path(os.fspath(dl_manager.manual_dir))
    except AssertionError as error:  # TFDS's way of saying the folder is missing or empty
      raise FileNotFoundError(str(error)) from error
    # Every pose file is read and every video and mask header checked here, before any
    # record is written.
    raws = layout.find_sequences(root, tuple(config.train_subjects) +
                                 tuple(config.test_subjects))
    plans = []
    for subject, group in itertools.groupby(raws, key=lambda r: r.subject):
      cams = cameras_lib.load_h36m_cameras(subject)
      plans.extend(examples.plan_sequence(raw, cams) for raw in group)
    generators = {}
    for split, subjects in (("train", config.train_subjects), ("test", config.test_subjects)):
      chosen = [p for p in plans if p.raw.subject in subjects]
      if chosen:
        generators[split] = self._generate_examples(chosen)
    return generators

  def _generate_examples(self, plans: Sequence[examples.SequencePlan]):
    config = self.builder_config
    pool = None
    if self._num_workers:
      # Spawned, not forked: the parent may hold threads (decoders, JAX) that fork breaks.
      pool = multiprocessing.get_context("spawn").Pool(self._num_workers)
    try:
      for subject, group in itertools.groupby(plans, key=lambda p: p.raw.subject):
        group = list(group)
        cams = framing.numpy_cameras(cameras_lib.load_h36m_cameras(subject))
        _LOG.info("%s: median backgrounds of %d sequences", subject, len(group))
        jobs = [([plan.videos[view].path for plan in group], config.background_every)
                for view in range(examples.NUM_VIEWS)]
        backgrounds = (pool.map(_background_job, jobs) if pool
                       else [_background_job(job) for job in jobs])
        jobs = [(plan, cams, backgrounds, config.frame_step) for plan in group]
        if pool:
          for records in pool.imap(_sequence_job, jobs):
            yield from records
        else:
          for job in jobs:
            yield from _sequence_records(*job)
    finally:
      if pool is not None:
        pool.terminate()
        pool.join()


def _background_job(job) -> np.ndarray:
  """(video paths, sampling step) -> median background; a picklable worker task."""
  paths, every = job
  return background.median_background(paths, every)


def _sequence_records(plan, cams, backgrounds, frame_step):
  """Yields one sequence's (key, encoded record)."""
  _LOG.info("%s %r: %d frames", plan.raw.subject, plan.raw.sequence, len(plan.pose_world))
  for key, record in examples.sequence_examples(plan, cams, backgrounds, frame_step):
    yield key, multiview_record.encode_record(record)


def _sequence_job(job) -> list:
  """A whole sequence's (key, encoded record) list; a picklable worker task."""
  return list(_sequence_records(*job))
