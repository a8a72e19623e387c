"""Grain pipelines: NVS pairs, labelled views, 4-view samples, lifter frames, RIE windows."""

import itertools
import json

import numpy as np
import pytest

from geopose_jax import skeleton
from geopose_jax.data import batching
from geopose_jax.data import multiview
from geopose_jax.data import options as data_options
from geopose_jax.data import poses
from geopose_jax.data import vocab
from geopose_jax.data import windows
from geopose_jax.errors import DatasetError
import fake_poses  # tests/ is on sys.path under pytest

POSE_SEQUENCES = {"S1": {"Walking 1": 7, "Eating": 5}, "S5": {"Photo 2": 6},
                  "S9": {"WalkDog": 4}, "S11": {"Sitting 1": 3}}


@pytest.fixture(scope="module")
def multiview_config(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("multiview")
  name = fake_poses.build_fake_multiview(data_dir)
  return data_options.data_config(name=name, data_dir=str(data_dir))


@pytest.fixture(scope="module")
def poses_config(tmp_path_factory):
  folder = tmp_path_factory.mktemp("poses")
  path_3d, path_2d = fake_poses.write_videopose3d_npz(folder / "in", POSE_SEQUENCES)
  return data_options.data_config(name="h36m_poses", data_dir=str(folder / "data"),
                                  npz_3d=str(path_3d), npz_2d=str(path_2d))


def _train_frames():
  return {split: [f for f in fake_poses.FakeMultiview.frames[split]]
          for split in fake_poses.FakeMultiview.frames}


def _identity(batch):
  """Per item (camera, frame, sequence number) as written into the fake images."""
  pixel = batch["image"][:, 0, 0].astype(int)
  return pixel[:, 0] // 40, pixel[:, 1], pixel[:, 2]


def test_nvs_pair_groups(multiview_config):
  loader = multiview.nvs_pairs(multiview_config, split="train", global_batch_size=8, seed=3)
  for batch in itertools.islice(iter(loader), 6):
    assert batch["image"].shape == (8, 16, 16, 3) and batch["mask"].shape == (8, 16, 16, 1)
    assert set(batch) == {"image", "background", "mask", "R", "K", "pose_3d_cam", "subject",
                          "action", "sequence", "camera", "frame"}
    camera, frame, sequence = _identity(batch)
    np.testing.assert_array_equal(camera, batch["camera"])
    np.testing.assert_array_equal(frame, batch["frame"])
    np.testing.assert_array_equal(batch["background"], 255 - batch["image"])
    # The pose and rotation belong to the item's own view and frame.
    expected_pose = (frame[:, None, None] + np.arange(17)[None, :, None]
                     + 1000.0 * (camera[:, None, None] + 1))
    np.testing.assert_allclose(batch["pose_3d_cam"], np.broadcast_to(expected_pose,
                                                                     (8, 17, 3)))
    for g in range(2):
      items = slice(4 * g, 4 * g + 4)
      assert len(set(sequence[items])) == 1 and len(set(batch["subject"][items])) == 1
      assert len(set(batch["sequence"][items])) == 1
      assert frame[4 * g] == frame[4 * g + 1] and frame[4 * g + 2] == frame[4 * g + 3]
      assert frame[4 * g] != frame[4 * g + 2]
      assert camera[4 * g] != camera[4 * g + 1] and camera[4 * g + 2] != camera[4 * g + 3]


def test_nvs_eval_pass_is_padded_and_deterministic(multiview_config):
  def run():
    loader = multiview.nvs_pairs(multiview_config, split="test", global_batch_size=8,
                                 shuffle=False, num_epochs=1)
    return list(loader)
  first, second = run(), run()
  num_records = sum(n for *_, n in fake_poses.FakeMultiview.frames["test"])
  valid = np.concatenate([b["valid"] for b in first])
  assert valid.sum() == 4 * num_records and len(valid) == 8 * int(np.ceil(num_records / 2))
  assert not valid[4 * num_records:].any()
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a["image"], b["image"])


def _valid_items(loader, key_fn):
  keys = []
  for batch in loader:
    for i in np.flatnonzero(batch["valid"]):
      keys.append(key_fn(batch, i))
  return keys


def test_label_subset_by_subject_and_fraction(multiview_config):
  frames = fake_poses.FakeMultiview.frames["train"]
  s1_records = sum(n for s, *_, n in frames if s == "S1")
  all_records = sum(n for *_, n in frames)

  def views(**options):
    labels = multiview.Labels(**options)
    loader = multiview.single_views(multiview_config, split="train", global_batch_size=4,
                                    shuffle=False, num_epochs=1, labels=labels)
    return _valid_items(loader, lambda b, i: (int(b["subject"][i]), int(b["frame"][i]),
                                              int(b["camera"][i]),
                                              int(b["image"][i, 0, 0, 2])))

  by_subject = views(subjects=("S1",))
  assert len(by_subject) == 4 * s1_records and len(set(by_subject)) == len(by_subject)
  _, index = multiview.open_multiview(multiview_config, "train")
  assert {s for s, *_ in by_subject} == {index.subject_names.index("S1")}
  half = views(fraction=0.5)
  assert len(half) == 4 * round(0.5 * all_records)
  assert half == views(fraction=0.5)           # deterministic
  assert set(half) != set(views(fraction=0.5, seed=1))
  with pytest.raises(ValueError, match="S9"):
    views(subjects=("S9",))


def test_multiview_samples(multiview_config):
  loader = multiview.multiview_samples(multiview_config, split="test", global_batch_size=4,
                                       shuffle=False, num_epochs=1)
  batch = next(iter(loader))
  assert batch["images"].shape == (4, 4, 16, 16, 3) and batch["masks"].shape == (4, 4, 16, 16)
  assert batch["R"].shape == (4, 4, 3, 3) and batch["pose_3d_cam"].shape == (4, 4, 17, 3)
  np.testing.assert_array_equal(batch["images"][:, :, 0, 0, 0] // 40, np.tile(np.arange(4), (4, 1)))
  np.testing.assert_array_equal(batch["masks"][:, :, 0, 0],
                                np.repeat((batch["frame"] % 2 == 0)[:, None], 4, axis=1))


def test_lifter_training_batches_carry_no_3d(poses_config):
  table = poses.load_poses(poses_config, "train")
  loader = poses.lifter_frames(poses_config, split="train", global_batch_size=8, seed=0)
  batch = next(iter(loader))
  assert set(batch) == {"pose_2d", "pose_2d_next", "subject", "action", "camera", "sequence"}
  assert batch["pose_2d"].shape == (8, 17, 2)
  # Each pair is (frame, next frame) of one sequence and camera.
  flat = table.pose_2d.reshape(table.num_frames, -1)
  for pose, pose_next in zip(batch["pose_2d"], batch["pose_2d_next"]):
    f = int(np.flatnonzero((flat == pose.reshape(-1)).all(axis=1))[0])
    np.testing.assert_array_equal(pose_next, table.pose_2d[f + 1])
    assert table.sequence_of_frame[f] == table.sequence_of_frame[f + 1]
  # Codes index the table's own vocabularies and sequence list.
  names = np.asarray(table.names)[batch["sequence"]]
  np.testing.assert_array_equal(np.asarray(table.subject_names)[batch["subject"]], names[:, 0])
  np.testing.assert_array_equal(np.asarray(table.action_names)[batch["action"]], names[:, 1])
  assert table.action_names == ("Eating", "Photo", "Walking")  # Human3.6M order
  num_items = sum(len(list(loader)) for loader in [poses.lifter_frames(
      poses_config, split="train", global_batch_size=2, shuffle=False, num_epochs=1)])
  train_frames = 4 * sum(n - 1 for s in ("S1", "S5") for n in POSE_SEQUENCES[s].values())
  assert num_items == train_frames // 2


def test_labelled_eval_frames_and_sequences(poses_config):
  loader = poses.labelled_frames(poses_config, split="test", global_batch_size=8)
  batches = list(loader)
  test_frames = 4 * sum(n for s in ("S9", "S11") for n in POSE_SEQUENCES[s].values())
  assert sum(b["valid"].sum() for b in batches) == test_frames
  assert len(batches) == int(np.ceil(test_frames / 8))
  table = poses.load_poses(poses_config, "test")
  np.testing.assert_allclose(batches[0]["pose_3d_cam"], table.pose_3d_cam[:8] * 1000.0)
  assert len(table.names) == 8 and int(table.length.sum()) == test_frames
  walk = [i for i, name in enumerate(table.names) if name[2] == "WalkDog"][0]
  assert table.names[walk][1] == "WalkDog" and table.length[walk] == 4


def test_window_indices_edge_padding_and_centre():
  indices = windows.window_indices(np.array([10, 12, 14]), np.array([10, 10, 10]),
                                   np.array([5, 5, 5]), 5)
  np.testing.assert_array_equal(indices, [[10, 10, 10, 11, 12], [10, 11, 12, 13, 14],
                                          [12, 13, 14, 14, 14]])
  causal = windows.window_indices(np.array([10, 12]), np.array([10, 10]), np.array([5, 5]), 3,
                                  causal=True)
  np.testing.assert_array_equal(causal, [[10, 10, 10], [10, 11, 12]])
  with pytest.raises(ValueError, match="odd"):
    windows.window_indices(np.array([0]), np.array([0]), np.array([1]), 4)


def test_temporal_windows_and_flip(poses_config):
  table = poses.load_poses(poses_config, "train")
  plain = poses_config.copy_and_resolve_references()
  loader = windows.temporal_windows(plain, receptive_field=5, split="train",
                                    global_batch_size=16, shuffle=False, num_epochs=1)
  batch = next(iter(loader))
  assert batch["pose_2d"].shape == (16, 5, 17, 2) and batch["pose_3d"].shape == (16, 17, 3)
  np.testing.assert_array_equal(batch["pose_2d"][:, 2], table.pose_2d[:16])
  np.testing.assert_array_equal(batch["pose_2d"][0, :2], table.pose_2d[[0, 0]])  # padded
  np.testing.assert_allclose(batch["pose_3d"], table.pose_3d_cam[:16]
                             - table.pose_3d_cam[:16, :1], atol=1e-6)
  np.testing.assert_array_equal(
      windows.sequence_windows(table.pose_2d[:7], np.array([0, 6]), 5),
      table.pose_2d[[[0, 0, 0, 1, 2], [4, 5, 6, 6, 6]]])
  np.testing.assert_array_equal(
      windows.sequence_windows(table.pose_2d[:7], np.array([1]), 5, causal=True),
      table.pose_2d[[[0, 0, 0, 0, 1]]])
  flipped = windows.temporal_windows(plain, receptive_field=5, split="train",
                                     global_batch_size=16, shuffle=False, num_epochs=1,
                                     flip=True, seed=5)
  other = next(iter(flipped))
  is_flipped = ~np.all(other["pose_2d"] == batch["pose_2d"], axis=(1, 2, 3))
  assert 0 < is_flipped.sum() < 16
  np.testing.assert_allclose(other["pose_2d"][is_flipped],
                             skeleton.flip_pose(batch["pose_2d"][is_flipped]))
  np.testing.assert_allclose(other["pose_3d"][is_flipped],
                             skeleton.flip_pose(batch["pose_3d"][is_flipped]))
  np.testing.assert_array_equal(skeleton.flip_pose(skeleton.flip_pose(batch["pose_2d"])),
                                batch["pose_2d"])


@pytest.mark.parametrize("kind", ["nvs", "rie"])
def test_iterator_state_round_trip(kind, multiview_config, poses_config):
  def make(seed=7):
    if kind == "nvs":
      return multiview.nvs_pairs(multiview_config, global_batch_size=4, seed=seed)
    return windows.temporal_windows(poses_config, receptive_field=5, global_batch_size=8,
                                     seed=seed, flip=True)
  iterator = iter(make())
  for _ in range(3):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(4)]
  resumed = iter(make())                    # a new loader, as in a resumed run
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  with pytest.raises(ValueError, match="does not match"):  # another data order is refused
    iter(make(seed=8)).set_state(state)


def test_two_processes_partition_the_data(multiview_config, poses_config):
  def frames(process_index, process_count):
    loader = poses.labelled_frames(poses_config, split="train", global_batch_size=4,
                                   process_index=process_index, process_count=process_count)
    return _valid_items(loader, lambda b, i: b["pose_2d"][i].tobytes())

  whole = frames(0, 1)
  parts = [frames(p, 2) for p in range(2)]
  assert not set(parts[0]) & set(parts[1])
  assert sorted(parts[0] + parts[1]) == sorted(whole)
  assert len(parts[0]) > 0 and len(parts[1]) > 0

  def views(process_index, process_count):
    loader = multiview.single_views(multiview_config, split="test", global_batch_size=4,
                                    process_index=process_index, process_count=process_count,
                                    shuffle=True, num_epochs=1)
    return _valid_items(loader, lambda b, i: (int(b["frame"][i]), int(b["camera"][i]),
                                              int(b["image"][i, 0, 0, 2])))
  parts = [views(p, 2) for p in range(2)]
  assert not set(parts[0]) & set(parts[1])
  assert sorted(parts[0] + parts[1]) == sorted(views(0, 1))


def test_batch_size_must_split(poses_config):
  with pytest.raises(ValueError, match="does not split"):
    poses.lifter_frames(poses_config, global_batch_size=9, process_count=2)
  with pytest.raises(ValueError, match="multiple of 4"):
    multiview.nvs_pairs(poses_config, global_batch_size=6)


def test_worker_processes_give_the_same_batches(multiview_config):
  config = multiview_config.copy_and_resolve_references()
  config.num_workers = 1
  with_workers = multiview.nvs_pairs(config, global_batch_size=8, seed=11)
  in_process = multiview.nvs_pairs(multiview_config, global_batch_size=8, seed=11)
  for got, want in zip(itertools.islice(iter(with_workers), 2),
                       itertools.islice(iter(in_process), 2)):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_index_batches_global_batches_do_not_depend_on_process_count():
  single = batching.IndexBatches(23, 8, 1, seed=4, shuffle=True, num_epochs=2)
  pair = batching.IndexBatches(23, 4, 2, seed=4, shuffle=True, num_epochs=2)
  assert len(single) == 2 * 3 and len(pair) == 2 * 2 * 3   # ceil(23 / 8) global batches
  # Process p's run of the source is [p * per_process, (p + 1) * per_process).
  for epoch in range(2):
    for k in range(3):
      whole = single[epoch * 3 + k]
      parts = [pair[p * pair.per_process + epoch * 3 + k] for p in range(2)]
      np.testing.assert_array_equal(np.concatenate([p["index"] for p in parts]), whole["index"])
      np.testing.assert_array_equal(np.concatenate([p["valid"] for p in parts]), whole["valid"])
  epoch_items = [single[k]["index"][single[k]["valid"]] for k in range(3)]
  assert sorted(np.concatenate(epoch_items).tolist()) == list(range(23))


def test_corrupt_dataset_file_gives_one_clear_error(multiview_config, tmp_path):
  import shutil
  data_dir = tmp_path / "data"
  shutil.copytree(multiview_config.data_dir, data_dir)
  [path] = list(data_dir.glob("fake_multiview/1.0.0/*-train.array_record*"))
  content = bytearray(path.read_bytes())
  for i in range(200, len(content) - 200, 97):
    content[i] ^= 0x5A
  path.write_bytes(bytes(content))
  config = multiview_config.copy_and_resolve_references()
  config.data_dir = str(data_dir)
  # The shard's damage is found when the dataset is opened, before any record is read.
  with pytest.raises(DatasetError, match="is damaged: split 'train': shard") as error:
    next(iter(multiview.nvs_pairs(config, global_batch_size=4)))
  assert str(data_dir / "fake_multiview" / "1.0.0") in str(error.value)


def test_record_index_is_cached_next_to_the_records(multiview_config):
  reader, index = multiview.open_multiview(multiview_config, "train")
  cache = f"{reader.builder_dir}/geopose_index-train.json"
  assert len(index) == sum(n for *_, n in fake_poses.FakeMultiview.frames["train"])
  with open(cache, encoding="utf-8") as f:
    assert len(json.load(f)) == len(index)
  multiview._scan.cache_clear()  # pylint: disable=protected-access
  _, again = multiview.open_multiview(multiview_config, "train")
  np.testing.assert_array_equal(again.members, index.members)
  np.testing.assert_array_equal(again.record, index.record)
  assert again.sequences == index.sequences


def test_multiview_codes_index_the_split_vocabulary(multiview_config):
  _, index = multiview.open_multiview(multiview_config, "train")
  loader = multiview.single_views(multiview_config, split="train", global_batch_size=8,
                                  shuffle=False, num_epochs=1)
  for batch in itertools.islice(iter(loader), 3):
    valid = batch["valid"]
    names = [index.sequences[q] for q in batch["sequence"][valid]]
    assert [n[0] for n in names] == [index.subject_names[c] for c in batch["subject"][valid]]
    assert [n[1] for n in names] == [index.action_names[c] for c in batch["action"][valid]]
  samples = next(iter(multiview.multiview_samples(multiview_config, split="train",
                                                  global_batch_size=4, shuffle=False,
                                                  num_epochs=1)))
  assert samples["sequence"].shape == (4,)
  assert index.subject_names == vocab.subject_vocabulary(n[0] for n in index.sequences)
