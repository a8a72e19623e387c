"""The h36m_poses builder: npz, cdf and synthetic sources, validation, interrupted builds."""


import numpy as np
import pytest

from data_prep import h36m_poses
from data_prep.h36m_poses import detector_noise
from data_prep.h36m_poses import h36m_poses_dataset_builder as builder_lib
from data_prep.h36m_poses import readers
from geopose_jax.data import options as data_options
from geopose_jax.geometry import cameras as cameras_lib
from geopose_jax.skeleton import H36M_32_TO_17
import fake_poses  # tests/ is on sys.path under pytest

SEQUENCES = {"S1": {"Walking 1": 6, "Photo": 5}, "S9": {"WalkDog 1": 4}}


def _records(builder, split):
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def _text(value):
  return value.decode() if isinstance(value, bytes) else value


def _assert_projects_onto_2d(record, tolerance_px):
  camera = cameras_lib.Camera(**{k: np.asarray(v, np.float64) for k, v in record["camera"].items()})
  projected = cameras_lib.project_distorted(record["pose_3d_cam"].astype(np.float64) * 1000.0,
                                            camera)
  np.testing.assert_allclose(projected, record["pose_2d_px"], atol=tolerance_px)
  # The camera frame is the world frame seen through the stored extrinsics.
  world_mm = record["pose_3d_world"].astype(np.float64) * 1000.0
  np.testing.assert_allclose(cameras_lib.world_to_camera(world_mm, camera) / 1000.0,
                             record["pose_3d_cam"], atol=1e-5)


def test_npz_build_reads_back_truncated_and_canonicalised(tmp_path):
  path_3d, path_2d = fake_poses.write_videopose3d_npz(tmp_path / "in", SEQUENCES)
  builder = h36m_poses.ensure_built("h36m_poses", tmp_path / "data", npz_3d=str(path_3d),
                                    npz_2d=str(path_2d))
  assert builder.builder_config.name.startswith("npz_data_2d_h36m_gt_")
  train, test = _records(builder, "train"), _records(builder, "test")
  assert len(train) == 2 * 4 and len(test) == 1 * 4   # (subject, sequence, camera)
  with np.load(path_3d, allow_pickle=True) as f:
    positions_3d = f["positions_3d"].item()
  by_key = {(_text(r["subject"]), _text(r["sequence"]), int(r["camera_index"])): r
            for r in train + test}
  record = by_key[("S1", "Walking 1", 2)]
  assert _text(record["action"]) == "Walking" and _text(record["camera_id"]) == "58860488"
  assert _text(by_key[("S1", "Photo", 0)]["action"]) == "Photo"
  assert _text(by_key[("S9", "WalkDog 1", 3)]["action"]) == "WalkDog"
  # 2D was 3 frames longer than the 3D: truncated to the 3D length.
  assert record["pose_2d_px"].shape == (6, 17, 2) and int(record["num_frames"]) == 6
  np.testing.assert_allclose(record["pose_3d_world"],
                             positions_3d["S1"]["Walking 1"][:, list(H36M_32_TO_17)], atol=1e-6)
  width, height = record["camera"]["res"]
  np.testing.assert_allclose(record["pose_2d"],
                             record["pose_2d_px"] / width * 2 - [1, height / width], atol=1e-5)
  for r in train + test:
    _assert_projects_onto_2d(r, 0.5)
  # A second call finds the complete copy and does not rebuild.
  again = h36m_poses.ensure_built("h36m_poses", tmp_path / "data", npz_3d=str(path_3d),
                                  npz_2d=str(path_2d))
  assert again.data_dir == builder.data_dir


def test_npz_without_2d_projects_3d(tmp_path):
  path_3d, _ = fake_poses.write_videopose3d_npz(tmp_path / "in", {"S5": {"Eating 2": 3}})
  builder = h36m_poses.ensure_built("h36m_poses", tmp_path / "data", npz_3d=str(path_3d))
  records = _records(builder, "train")
  assert len(records) == 4 and "test" not in builder.info.splits
  for record in records:
    _assert_projects_onto_2d(record, 0.5)


def test_cdf_source(tmp_path):
  manual = tmp_path / "manual"
  world_mm = fake_poses.write_raw_cdf(manual, "S11", "Directions 1", 5)
  builder = h36m_poses.ensure_built("h36m_poses/cdf", tmp_path / "data", manual_dir=manual)
  records = _records(builder, "test")
  assert len(records) == 4
  for record in records:
    assert _text(record["action"]) == "Directions" and record["pose_3d_cam"].shape == (5, 17, 3)
    np.testing.assert_allclose(record["pose_3d_world"] * 1000.0,
                               world_mm[:, list(H36M_32_TO_17)], atol=1e-3)
    _assert_projects_onto_2d(record, 0.5)


def test_synthetic_source_projects_exactly(tmp_path, monkeypatch):
  rng = np.random.default_rng(3)
  fake = [readers.PoseSequence("S1", "02_01_0", fake_poses.random_world_poses(rng, 4, 17), None,
                               "fake", action="Walking"),
          readers.PoseSequence("S9", "09_01_0", fake_poses.random_world_poses(rng, 3, 17), None,
                               "fake", action="Running")]
  heldout = [readers.PoseSequence("S1", "02_01_0", fake_poses.random_world_poses(rng, 5, 17),
                                  None, "fake", action="Walking")]
  monkeypatch.setattr(builder_lib, "synthetic_pose_sequences", lambda: fake)
  monkeypatch.setattr(builder_lib, "synthetic_heldout_sequences", lambda: heldout)
  clean = h36m_poses.ensure_built("h36m_poses", tmp_path / "data")
  assert clean.builder_config.name == "synthetic"
  held = _records(clean, "heldout")
  assert len(held) == 4 and {int(r["num_frames"]) for r in held} == {5}
  assert {_text(r["subject"]) for r in held} == {"S1"}
  records = _records(clean, "train") + _records(clean, "test") + held
  assert len(records) == 12
  for record in records:
    _assert_projects_onto_2d(record, 0.5)
  noisy = h36m_poses.ensure_built("h36m_poses/synthetic_noisy", tmp_path / "data")
  noisy_records = {(_text(r["sequence"]), int(r["camera_index"])): r
                   for r in _records(noisy, "train")}
  for record in _records(clean, "train"):
    other = noisy_records[(_text(record["sequence"]), int(record["camera_index"]))]
    np.testing.assert_array_equal(other["pose_3d_cam"], record["pose_3d_cam"])
    error = np.linalg.norm(other["pose_2d_px"] - record["pose_2d_px"], axis=-1)
    assert 0.0 < error.mean() < 40.0


def test_detector_noise_statistics():
  clean = np.zeros((4000, 17, 2), np.float32)
  noise = detector_noise.DetectorNoise(outlier_rate=0.0, swap_rate=0.0)
  noisy = detector_noise.add_detector_noise(clean, np.random.default_rng(0), noise)
  np.testing.assert_allclose(noisy.std(axis=0).mean(axis=-1), noise.sigma_px, rtol=0.15)
  lag1 = np.mean(noisy[1:] * noisy[:-1]) / np.mean(noisy * noisy)
  assert abs(lag1 - noise.temporal_correlation) < 0.05
  again = detector_noise.add_detector_noise(clean, np.random.default_rng(0), noise)
  np.testing.assert_array_equal(noisy, again)


def _write_dict_npz(path, key, value):
  np.savez(path, **{key: value})


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("shape", r"shape \(.*16, 2\).*expected \(N, 17, 2\)"),
    ("subject", "unknown subject 'S2'"),
    ("corrupt", "not a readable .npz"),
    ("nan", "non-finite"),
    ("short2d", "fewer than"),
])
def test_bad_npz_gives_one_clear_error(tmp_path, case, message):
  path_3d, path_2d = fake_poses.write_videopose3d_npz(tmp_path, {"S1": {"Walking 1": 4}})
  named = path_2d
  if case == "missing":
    named = tmp_path / "nowhere.npz"
    path_2d = named
  elif case == "shape":
    fake_poses.write_videopose3d_npz(tmp_path, {"S1": {"Walking 1": 4}}, shape_2d=(16, 2))
  elif case == "subject":
    fake_poses.write_videopose3d_npz(tmp_path, {"S2": {"Walking 1": 4}})
  elif case == "corrupt":
    named = path_3d
    path_3d.write_bytes(path_3d.read_bytes()[:40])
  elif case == "nan":
    named = path_3d
    with np.load(path_3d, allow_pickle=True) as f:
      positions = f["positions_3d"].item()
    positions["S1"]["Walking 1"][1, 3] = np.nan
    _write_dict_npz(path_3d, "positions_3d", positions)
  elif case == "short2d":
    fake_poses.write_videopose3d_npz(tmp_path, {"S1": {"Walking 1": 4}}, extra_2d_frames=0)
    with np.load(path_3d, allow_pickle=True) as f:
      positions = f["positions_3d"].item()
    positions["S1"]["Walking 1"] = np.concatenate([positions["S1"]["Walking 1"]] * 2)
    _write_dict_npz(path_3d, "positions_3d", positions)
  data_dir = tmp_path / "data"
  with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
    h36m_poses.ensure_built("h36m_poses", data_dir, npz_3d=str(path_3d), npz_2d=str(path_2d))
  assert str(named) in str(error.value)
  assert not list(data_dir.glob("h36m_poses/*/*/dataset_info.json"))


def test_corrupt_cdf_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  fake_poses.write_raw_cdf(manual, "S1", "Eating", 3)
  broken = manual / "S1" / "MyPoseFeatures" / "D2_Positions" / "Eating.55011271.cdf"
  broken.write_bytes(b"not a cdf file at all")
  with pytest.raises(ValueError, match="cannot read variable 'Pose'") as error:
    h36m_poses.ensure_built("h36m_poses/cdf", tmp_path / "data", manual_dir=manual)
  assert str(broken) in str(error.value)


def test_interrupted_build_never_reads_as_complete(tmp_path, monkeypatch):
  path_3d, path_2d = fake_poses.write_videopose3d_npz(tmp_path / "in", SEQUENCES)
  original = builder_lib.sequence_records
  calls = []

  def failing(sequence):
    calls.append(sequence.sequence)
    if len(calls) == 2:
      raise KeyboardInterrupt("interrupted")
    yield from original(sequence)

  monkeypatch.setattr(builder_lib, "sequence_records", failing)
  data_dir = tmp_path / "data"
  with pytest.raises(KeyboardInterrupt):
    h36m_poses.ensure_built("h36m_poses", data_dir, npz_3d=str(path_3d), npz_2d=str(path_2d))
  builder = h36m_poses.make_builder("h36m_poses", data_dir, npz_3d=str(path_3d),
                                    npz_2d=str(path_2d))
  assert not builder.is_prepared()
  assert not list(data_dir.glob("h36m_poses/*/*/dataset_info.json"))
  monkeypatch.setattr(builder_lib, "sequence_records", original)
  builder = h36m_poses.ensure_built("h36m_poses", data_dir, npz_3d=str(path_3d),
                                    npz_2d=str(path_2d))
  assert len(_records(builder, "train")) == 8


def test_unknown_config_and_lonely_2d_are_refused(tmp_path):
  with pytest.raises(ValueError, match="unknown h36m_poses config 'gt'"):
    h36m_poses.make_builder("h36m_poses/gt", tmp_path)
  with pytest.raises(ValueError, match="npz_3d is not"):
    h36m_poses.make_builder("h36m_poses", tmp_path, npz_2d="x.npz")


def test_registered_npz_config_reads_the_manual_folder(tmp_path):
  fake_poses.write_videopose3d_npz(tmp_path / "manual", {"S7": {"Greeting": 3}})
  builder = h36m_poses.ensure_built("h36m_poses/npz", tmp_path / "data",
                                    manual_dir=tmp_path / "manual")
  records = _records(builder, "train")
  assert builder.builder_config.name == "npz" and len(records) == 4
  assert {_text(r["action"]) for r in records} == {"Greeting"}
  with pytest.raises(FileNotFoundError, match="Manual directory .* does not exist"):
    h36m_poses.ensure_built("h36m_poses/npz", tmp_path / "other")


def test_free_sequence_names_build_and_load(tmp_path):
  """Any sequence name builds; Human3.6M names are canonicalised, others are their own
  action; the loaders' codes index the table's own vocabularies."""
  from geopose_jax.data import poses as poses_lib
  from geopose_jax.data import windows
  sequences = {"S1": {"Dance": 5, "Walking 1": 4, "my clip_2": 3}, "S9": {"Dance": 4}}
  path_3d, path_2d = fake_poses.write_videopose3d_npz(tmp_path / "in", sequences)
  h36m_poses.ensure_built("h36m_poses", tmp_path / "data", npz_3d=str(path_3d),
                          npz_2d=str(path_2d))
  config = data_options.data_config(name="h36m_poses", data_dir=str(tmp_path / "data"),
                                    npz_3d=str(path_3d), npz_2d=str(path_2d))
  table = poses_lib.load_poses(config, "train")
  assert table.action_names == ("Walking", "Dance", "my clip_2")  # canonical first
  assert table.subject_names == ("S1",)
  assert {n[2] for n in table.names} == {"Dance", "Walking 1", "my clip_2"}
  batch = next(iter(poses_lib.labelled_frames(config, split="train", global_batch_size=8)))
  for b in (batch, next(iter(windows.temporal_windows(config, receptive_field=3, split="train",
                                                      global_batch_size=8, shuffle=False,
                                                      num_epochs=1)))):
    sequence = b["sequence"][b["valid"]]
    names = np.asarray(table.names)[sequence]
    np.testing.assert_array_equal(np.asarray(table.action_names)[b["action"][b["valid"]]],
                                  [builder_lib.sequence_action(n[2]) for n in names])
  test = poses_lib.load_poses(config, "test")
  assert test.action_names == ("Dance",) and test.subject_names == ("S9",)
  assert builder_lib.sequence_action("Walking 1") == "Walking"
  assert builder_lib.sequence_action(" Dance ") == "Dance"
