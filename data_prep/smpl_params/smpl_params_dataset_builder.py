"""`smpl_params`: SMPL pose and shape parameters, one record per frame, for the pose prior.

Builder configs:
  cmu      (default) the whole packaged CMU motion library (geopose_jax/assets/cmu_library/,
           249 clips) with its joint rotations put on SMPL's 24-joint tree and sampled
           betas (data_prep/smpl_params/cmu.py documents the mapping of every skeleton
           variant). The clips carry no body shape, so each record gets beta ~ N(0, I) (10
           components, clipped to [-3, 3]) from a seeded generator: the spread that SMPL's
           and the procedural body's shape spaces are scaled for. Split by CMU subject as the synthetic
           datasets are (geopose_jax/data/motion_plan.py: train = the clips of the training
           CMU subjects, test = those of TEST_CMU_SUBJECTS); frames balanced by action and
           CMU subject (data_prep/smpl_params/library_frames.py): TRAIN_FRAMES_PER_ACTION
           per action (frames of a scarce subject up to 3 times), TEST_FRAMES_PER_ACTION in
           the test split (none twice); every frame also mirrored. About 60k train and 13k
           test records; a clip whose skeleton does not map onto SMPL's is left out with
           the reason logged.
  surreal  SURREAL's *_info.mat files in the manual folder (licence-gated; see
           MANUAL_DOWNLOAD_INSTRUCTIONS); splits from the release's train/val/test folders.

Record: theta (72,) float32 axis-angle per joint (joint 0: global orientation), beta (10,)
float32, source (the library clip, or the SURREAL info file), frame (int32: the frame of
the clip at the library's 50 fps; SURREAL: the index among the kept frames), cmu_subject
and action (the CMU subject and the library's category, vocab.LIBRARY_ACTIONS; '' for
SURREAL), mirrored (the left-right mirror image of the frame).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.smpl_params import cmu
from data_prep.smpl_params import library_frames
from data_prep.smpl_params import surreal
from geopose_jax.data import motion_library
from geopose_jax.data import motion_plan
from geopose_jax.errors import InputError

NAME = "smpl_params"
_LOG = logging.getLogger(__name__)
# Library frames per action and split (before mirroring). The prior trains 20k steps of 64
# (demo: 400): 60k training records are ~20 passes, none of them a copy of the last.
TRAIN_FRAMES_PER_ACTION = 3000
TEST_FRAMES_PER_ACTION = 1000
MAX_REPEATS = {"train": 3, "test": 1}
NUM_BETAS = 10
BETA_CLIP = 3.0
_SPLIT_CODES = {"train": 0, "test": 1}


@dataclasses.dataclass(eq=False)
class SmplParamsConfig(tfds.core.BuilderConfig):
  """source: 'cmu' or 'surreal'; frame_step: SURREAL's, keep every n-th frame; seed: the
  CMU frames drawn and their betas; *_frames_per_action: CMU frames per action."""
  source: str = "cmu"
  frame_step: int = 1
  seed: int = 0
  train_frames_per_action: int = TRAIN_FRAMES_PER_ACTION
  test_frames_per_action: int = TEST_FRAMES_PER_ACTION


class Builder(array_record_builder.ArrayRecordBuilder):
  """SMPL (theta, beta) per frame from the CMU motion library or SURREAL."""

  name = NAME
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "First release.",
      "2.0.0": "cmu: the whole motion library split by CMU subject, frames balanced by action "
               "and CMU subject; records name their CMU subject, action and mirroring.",
  }
  BUILDER_CONFIGS = [
      SmplParamsConfig(name="cmu", source="cmu",
                       description="The CMU motion library on SMPL's tree, betas ~ N(0, I)."),
      SmplParamsConfig(name="surreal", source="surreal", frame_step=10,
                       description="SURREAL *_info.mat files from the manual folder."),
  ]
  DEFAULT_CONFIG_NAME = "cmu"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  SURREAL is licence-gated (https://www.di.ens.fr/willow/research/surreal/data/, accept the
  licence); nothing is downloaded for you. Put the release's cmu/ folder — or any folder
  tree of <sequence>_c%04d_info.mat files — in the manual folder (--manual_dir or
  --config.data.manual_dir). Folders named train/val/test give the splits.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    f32 = np.float32
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "theta": tfds.features.Tensor(shape=(72,), dtype=f32, doc="axis-angle per joint"),
            "beta": tfds.features.Tensor(shape=(10,), dtype=f32, doc="shape coefficients"),
            "source": tfds.features.Text(doc="library clip or SURREAL info file"),
            "frame": tfds.features.Scalar(dtype=np.int32),
            "cmu_subject": tfds.features.Text(doc="CMU subject ('' for SURREAL)"),
            "action": tfds.features.Text(doc="library category ('' for SURREAL)"),
            "mirrored": tfds.features.Scalar(dtype=np.bool_),
        }),
        homepage="https://smpl.is.tue.mpg.de",
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    if config.source == "cmu":
      return {split: self._generate_examples(("cmu", split, None)) for split in _SPLIT_CODES}
    if config.source == "surreal":
      root = pathlib.Path(os.fspath(dl_manager.manual_dir))
      files = surreal.find_info_files(root)
      by_split: dict[str, list[pathlib.Path]] = {}
      for path in files:
        by_split.setdefault(surreal.split_of(path, root), []).append(path)
      return {split: self._generate_examples(("surreal", paths, root))
              for split, paths in by_split.items()}
    raise ValueError(f"smpl_params config {config.name!r}: unknown source {config.source!r}")

  def _generate_examples(self, spec):
    """spec: ('cmu', split, None) or ('surreal', info files, their root folder)."""
    kind, items, root = spec
    if kind == "cmu":
      yield from self._cmu_examples(items)
    else:
      yield from self._surreal_examples(items, root)

  def _cmu_examples(self, split):
    config = self.builder_config
    budget = (config.train_frames_per_action if split == "train"
              else config.test_frames_per_action)
    infos = usable_clips(motion_plan.library_split()[split])
    picks = library_frames.balanced_frames(infos, budget, MAX_REPEATS[split],
                                           seed=[config.seed, _SPLIT_CODES[split]])
    for number, (info, frames) in enumerate(picks):
      theta = cmu.library_theta(motion_library.load_clip(info.clip), frames)
      theta = np.concatenate([theta, cmu.mirror_axis_angle(theta)]).astype(np.float32)
      rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], number, 1])
      beta = np.clip(rng.standard_normal((len(theta), NUM_BETAS)), -BETA_CLIP, BETA_CLIP)
      for i in range(len(theta)):
        yield f"{info.clip}_{i}", {
            "theta": theta[i], "beta": beta[i].astype(np.float32), "source": info.clip,
            "frame": int(frames[i % len(frames)]), "cmu_subject": info.cmu_subject,
            "action": info.action, "mirrored": i >= len(frames)}

  def _surreal_examples(self, paths, root):
    for path in paths:
      theta, beta = surreal.read_info(path, self.builder_config.frame_step)
      name = str(path.relative_to(root))
      for i in range(len(theta)):
        yield f"{name}_{i}", {"theta": theta[i], "beta": beta[i], "source": name, "frame": i,
                              "cmu_subject": "", "action": "", "mirrored": False}


def usable_clips(infos):
  """The clips whose skeleton maps onto SMPL's tree (cmu.py); the others are logged with
  the reason and left out."""
  out = []
  for info in infos:
    clip = motion_library.load_clip(info.clip)
    where = f"motion library clip {info.clip}"
    try:
      sources = cmu.smpl_sources(clip.joints, where)
      cmu.rest_corrections(clip.parents, clip.offsets, sources, where)
    except InputError as error:
      _LOG.warning("smpl_params: left out %s", error)
      continue
    out.append(info)
  return out
