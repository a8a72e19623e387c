"""`smpl_params`: SMPL pose and shape parameters, one record per frame, for the pose prior.

Builder configs:
  cmu      (default) the bundled CMU clips (geopose_jax/assets/cmu_mocap/) with their joint
           rotations put on SMPL's 24-joint tree and sampled betas (data_prep/smpl_params/
           cmu.py documents the mapping and the beta distribution); train = the clips the
           training subjects of the synthetic data perform, test = the others.
  surreal  SURREAL's *_info.mat files in the manual folder (licence-gated; see
           MANUAL_DOWNLOAD_INSTRUCTIONS); splits from the release's train/val/test folders.

Record: theta (72,) float32 axis-angle per joint (joint 0: global orientation), beta (10,)
float32, source (the clip or file it came from), frame (int32, index in the kept frames).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.smpl_params import cmu
from data_prep.smpl_params import surreal
from geopose_jax.data import motion

NAME = "smpl_params"


@dataclasses.dataclass(eq=False)
class SmplParamsConfig(tfds.core.BuilderConfig):
  """source: 'cmu' or 'surreal'; frame_step: keep every n-th frame; seed: CMU betas."""
  source: str = "cmu"
  frame_step: int = 2
  seed: int = 0


class Builder(array_record_builder.ArrayRecordBuilder):
  """SMPL (theta, beta) per frame from the bundled CMU motion or SURREAL."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      SmplParamsConfig(name="cmu", source="cmu", frame_step=2,
                       description="Bundled CMU clips on SMPL's tree, betas ~ N(0, I)."),
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
            "source": tfds.features.Text(doc="clip id or info file"),
            "frame": tfds.features.Scalar(dtype=np.int32),
        }),
        homepage="https://smpl.is.tue.mpg.de",
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    if config.source == "cmu":
      return {"train": self._generate_examples(("cmu", motion.TRAIN_CLIPS, None)),
              "test": self._generate_examples(("cmu", motion.TEST_CLIPS, None))}
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
    """spec: ('cmu', clip ids, None) or ('surreal', info files, their root folder)."""
    kind, items, root = spec
    if kind == "cmu":
      yield from self._cmu_examples(items)
    else:
      yield from self._surreal_examples(items, root)

  def _cmu_examples(self, clips):
    config = self.builder_config
    for number, clip in enumerate(clips):
      theta, beta = cmu.clip_parameters(motion.clip_path(clip), config.frame_step,
                                        seed=(config.seed, number, len(clips)))
      for i in range(len(theta)):
        yield f"{clip}_{i}", {"theta": theta[i], "beta": beta[i], "source": clip, "frame": i}

  def _surreal_examples(self, paths, root):
    for path in paths:
      theta, beta = surreal.read_info(path, self.builder_config.frame_step)
      name = str(path.relative_to(root))
      for i in range(len(theta)):
        yield f"{name}_{i}", {"theta": theta[i], "beta": beta[i], "source": name, "frame": i}
