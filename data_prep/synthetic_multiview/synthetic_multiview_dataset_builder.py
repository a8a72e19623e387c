"""TFDS builder `synthetic_multiview`: real CMU motion rendered through Human3.6M cameras.

Seven synthetic subjects (S1, S5, S6, S7, S8 train; S9, S11 test) with their own bodies and
clothes perform the packaged CMU motion library (geopose_jax.data.motion: actions and CMU
subjects balanced; the test subjects perform clips of CMU subjects no training subject
performs). Every record holds all four Human3.6M cameras of the
subject: 128 x 128 crops of the rendered image, of the empty room (the background) and of
the foreground mask, the cameras (R, t) and crop intrinsics K, and the 3D/2D pose (see
features.py for the layout and records.py for the projection conventions).

Configs: `default` samples every 48th 50 fps frame of the balanced plan (frames across ~250
clips; builds in minutes on 2 cores); `large` every 10th (~5x the records, for machines with
more cores: `num_workers`); `tiny` renders a few frames of S1 and S9 in seconds, for tests.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from data_prep import array_record_builder
from data_prep.synthetic_multiview import features as features_lib
from data_prep.synthetic_multiview import records
from geopose_jax.data import vocab

NAME = "synthetic_multiview"


@dataclasses.dataclass
class SyntheticMultiviewConfig(tfds.core.BuilderConfig):
  """What to render.

  Attributes:
    subjects: synthetic subjects to include (vocab.SUBJECTS).
    frame_step: keep every frame_step-th 50 fps frame.
    max_frames_per_subject: 0 for all.
    max_sequences_per_subject: 0 for all.
    supersample: body samples per pixel and axis.
    room_scale: resolution of the rendered background relative to the camera's.
  """
  subjects: tuple[str, ...] = vocab.SUBJECTS
  frame_step: int = 48
  max_frames_per_subject: int = 0
  max_sequences_per_subject: int = 0
  supersample: int = 2
  room_scale: float = 0.5


class Builder(array_record_builder.ArrayRecordBuilder):
  """Renders the synthetic multi-view dataset (no download; the clips are packaged)."""

  name = NAME
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "First release: 7 subjects, 10 CMU clips, 4 Human3.6M cameras.",
      "2.0.0": "The 250-clip CMU library, split by CMU subject, balanced actions; frames "
               "sampled across clips (every 48th); a `large` config (every 10th).",
  }
  BUILDER_CONFIGS = [
      SyntheticMultiviewConfig(name="default", description="Every 48th frame of the "
                               "balanced plan (~1 fps), across ~250 clips."),
      SyntheticMultiviewConfig(name="large", frame_step=10, description="Every 10th frame "
                               "(5 fps): ~5x the default's records."),
      SyntheticMultiviewConfig(
          name="tiny", description="3 frames of S1 (train) and S9 (test), for tests.",
          subjects=("S1", "S9"), frame_step=10, max_frames_per_subject=3,
          max_sequences_per_subject=1, supersample=1, room_scale=0.2),
  ]
  DEFAULT_CONFIG_NAME = "default"

  def __init__(self, *, library_dir: str | os.PathLike | None = None,
               num_workers: int | None = None, **kwargs):
    """library_dir: the motion library (default packaged); num_workers: render processes."""
    self._library_dir = os.fspath(library_dir) if library_dir else None
    if num_workers is None:
      num_workers = min(2, os.cpu_count() or 1)
    self._num_workers = num_workers
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, features=features_lib.multiview_features(),
        homepage="http://mocap.cs.cmu.edu",
        citation="The data used in this project was obtained from mocap.cs.cmu.edu. The "
                 "database was created with funding from NSF EIA-0196217.")

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    unknown = [s for s in config.subjects if s not in vocab.SUBJECTS]
    if unknown:
      raise ValueError(f"{NAME}/{config.name}: unknown subject(s) {unknown}; synthetic "
                       f"subjects are {vocab.SUBJECTS}")
    splits = {}
    for split, members in (("train", vocab.TRAIN_SUBJECTS), ("test", vocab.TEST_SUBJECTS)):
      subjects = tuple(s for s in config.subjects if s in members)
      if subjects:
        splits[split] = self._generate_examples(subjects, split)
    return splits

  def _generate_examples(self, subjects, split):
    config = self.builder_config
    frames = records.plan_frames(
        subjects, frame_step=config.frame_step,
        max_frames_per_subject=config.max_frames_per_subject,
        max_sequences_per_subject=config.max_sequences_per_subject,
        library_dir=self._library_dir)
    options = records.RenderOptions(supersample=config.supersample,
                                    room_scale=config.room_scale)
    yield from records.generate(frames, options, encode=features_lib.encode_record,
                                num_workers=self._num_workers,
                                progress=f"Rendering {NAME}/{config.name} {split}")
