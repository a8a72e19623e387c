"""A damaged built dataset is named with what is wrong and rebuilt only on request."""

import pathlib

import pytest

import fake_poses  # tests/ is on sys.path under pytest
from data_prep import build
from geopose_jax.data import integrity
from geopose_jax.data import options as data_options
from geopose_jax.errors import DatasetError, InputError


@pytest.fixture(scope="module")
def npz_pair(tmp_path_factory):
  folder = tmp_path_factory.mktemp("npz")
  return fake_poses.write_videopose3d_npz(folder, {"S1": {"Walking 1": 4}, "S9": {"Eating 2": 3}})


def _build(data_dir, npz_pair, **options):
  path_3d, path_2d = npz_pair
  return build.ensure_built("h36m_poses", data_dir, npz_3d=str(path_3d), npz_2d=str(path_2d),
                            **options)


def _train_shard(folder):
  return next(pathlib.Path(folder).glob("*-train.array_record-*"))


DAMAGE = {
    "shard deleted": (lambda d: _train_shard(d).unlink(), "is missing"),
    "shard truncated": (lambda d: _train_shard(d).write_bytes(_train_shard(d).read_bytes()[:50]),
                        "shard h36m_poses-train.* truncated"),
    "info deleted": (lambda d: (d / "dataset_info.json").unlink(), "dataset_info.json is missing"),
    "features deleted": (lambda d: (d / "features.json").unlink(), "features.json is missing"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_is_named_and_rebuilt_on_request(tmp_path, npz_pair, case):
  damage, message = DAMAGE[case]
  folder = pathlib.Path(_build(tmp_path, npz_pair).data_dir)
  assert integrity.dataset_problems(folder) == []
  damage(folder)
  with pytest.raises(DatasetError, match=f"{message}.*--rebuild"):
    _build(tmp_path, npz_pair)
  rebuilt = _build(tmp_path, npz_pair, rebuild=True)
  assert integrity.dataset_problems(rebuilt.data_dir) == []
  assert rebuilt.info.splits["train"].num_examples == 4


def test_build_command_reports_damage_in_one_line(tmp_path, npz_pair, capsys):
  folder = pathlib.Path(_build(tmp_path, npz_pair).data_dir)
  _train_shard(folder).unlink()
  capsys.readouterr()
  path_3d, path_2d = npz_pair
  args = ["h36m_poses", "--data_dir", str(tmp_path), "--npz_3d", str(path_3d),
          "--npz_2d", str(path_2d)]
  assert build.main(args) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "is missing" in err
  assert build.main(args + ["--rebuild"]) == 0
  assert integrity.dataset_problems(folder) == []


def test_random_file_as_npz_is_refused_before_unpickling(tmp_path):
  bad = tmp_path / "data_3d_h36m.npz"
  bad.write_bytes(b"\x80\x04random bytes that are no zip")
  with pytest.raises(InputError, match=r"not a readable \.npz \(zip\) file"):
    build.ensure_built("h36m_poses", tmp_path / "data", npz_3d=str(bad))
  assert not (tmp_path / "data").exists()  # no empty dataset folders left behind


def test_failed_build_leaves_existing_datasets_alone(tmp_path, npz_pair):
  folder = pathlib.Path(_build(tmp_path, npz_pair).data_dir)
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"no zip")
  with pytest.raises(InputError):
    build.ensure_built("h36m_poses", tmp_path, npz_3d=str(bad))
  assert integrity.dataset_problems(folder) == []
  leftovers = [p for p in (tmp_path / "h36m_poses").iterdir() if p.is_dir() and not any(p.rglob("*"))]
  assert leftovers == []


def test_training_data_path_refuses_a_damaged_dataset(tmp_path, npz_pair):
  from geopose_jax.data import sources  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(_build(tmp_path, npz_pair).data_dir)
  (folder / "dataset_info.json").unlink()
  path_3d, path_2d = npz_pair
  data = data_options.data_config(name="h36m_poses", data_dir=str(tmp_path),
                                  npz_3d=str(path_3d), npz_2d=str(path_2d))
  with pytest.raises(DatasetError, match="dataset_info.json is missing"):
    sources.open_dataset(data)  # used to say "no split 'train'" much later
