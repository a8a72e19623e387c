"""Input pipelines: TFDS records -> Grain loaders of process-local numpy batches.

Loaders (each returns a `grain.DataLoader`; see the function docstrings for batch keys):
  multiview.nvs_pairs          groups of 4 views [t: a, b | t': c, d] for novel-view synthesis
  multiview.single_views       independent labelled views (pose head), label subsets
  multiview.multiview_samples  all 4 views of a frame (SMPL with silhouettes)
  poses.lifter_frames          2D frames + next frame, no 3D (self-supervised lifter)
  poses.labelled_frames        2D + 3D frames (evaluation, 3D-supervised references)
  windows.rie_windows          edge-padded 2D windows + centre 3D, flip augmentation (RIE)

All take `config.data` first, then keyword arguments: split, global_batch_size,
process_index, process_count, seed, shuffle, num_epochs (None: endless training stream;
a number: a finite pass padded to whole batches with `valid`). The dataset named by
`config.data.name` is built on first use (`sources`); `batching` holds the Grain plumbing
(sharding, workers, padding, checkpointable state); `vocab` the integer codes of subjects
and actions.
"""
