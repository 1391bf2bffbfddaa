"""Loaders read each dataset's native files; bad files give clear errors; batching is by index."""

from __future__ import annotations

import pytest
import torch

from bench.data import GroupedBatches, TensorBatches, TensorDataModule, crop_flip, load_split
from bench.errors import ConfigError, DataError
from tests.native_files import make_cifar_dataset, make_idx_dataset, make_svhn_dataset


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("kmnist", "KMNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_loaders(tmp_path, name, folder):
    make_idx_dataset(tmp_path, folder, n_train=120, n_test=40)
    x, y = load_split(name, str(tmp_path), True, False, False)
    assert x.shape == (120, 1, 28, 28) and x.dtype == torch.uint8 and y.shape == (120,)
    x, y = load_split(name, str(tmp_path), False, False, False)
    assert x.shape == (40, 1, 28, 28)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loaders(tmp_path, name, classes):
    make_cifar_dataset(tmp_path, classes, n_train=100, n_test=30)
    x, y = load_split(name, str(tmp_path), True, False, False)
    assert x.shape == (100, 3, 32, 32) and int(y.max()) < classes
    x, y = load_split(name, str(tmp_path), False, False, False)
    assert x.shape == (30, 3, 32, 32)


def test_svhn_loader_maps_label_10_to_0(tmp_path):
    make_svhn_dataset(tmp_path, n_train=50, n_test=20)
    x, y = load_split("svhn", str(tmp_path), True, False, False)
    assert x.shape == (50, 3, 32, 32) and 0 <= int(y.min()) and int(y.max()) <= 9


def test_checksums_are_checked_by_default(tmp_path):
    """Generated CIFAR files are not the official ones: with verification on, the error says so."""
    make_cifar_dataset(tmp_path, 10, n_train=50, n_test=10)
    with pytest.raises(DataError, match="checksum|cifar-10"):
        load_split("cifar10", str(tmp_path), True, False, True)


def test_missing_files_name_the_file_and_the_source(tmp_path):
    with pytest.raises(DataError) as e:
        load_split("mnist", str(tmp_path), True, False, False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "missing" in msg and "http" in msg


def test_corrupt_idx_file_is_named(tmp_path):
    raw = make_idx_dataset(tmp_path, "KMNIST", n_train=50, n_test=10)
    bad = raw / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:500])  # truncated download
    with pytest.raises(DataError, match="corrupt file .*train-images-idx3-ubyte.*truncated"):
        load_split("kmnist", str(tmp_path), True, False, False)


def test_corrupt_cifar_pickle_is_named(tmp_path):
    folder = make_cifar_dataset(tmp_path, 10, n_train=50, n_test=10)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="corrupt file .*data_batch_3"):
        load_split("cifar10", str(tmp_path), True, False, False)


def test_corrupt_svhn_mat_is_named(tmp_path):
    make_svhn_dataset(tmp_path, n_train=20, n_test=10)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(DataError, match="corrupt file .*test_32x32.mat"):
        load_split("svhn", str(tmp_path), False, False, False)


def test_real_fashion_mnist_loads(fmnist_root):
    x, y = load_split("fashion_mnist", str(fmnist_root), True)
    assert x.shape == (60000, 1, 28, 28) and torch.bincount(y).tolist() == [6000] * 10
    x, y = load_split("fashion_mnist", str(fmnist_root), False)
    assert x.shape == (10000, 1, 28, 28)


def test_datamodule_splits_normalises_and_keeps_val_apart(tmp_path):
    make_idx_dataset(tmp_path, "MNIST", n_train=200, n_test=50)
    dm = TensorDataModule("mnist", root=tmp_path, verify=False, val_fraction=0.25, batch_size=32)
    dm.setup()
    xtr, _ = dm.splits["train"]
    xval, _ = dm.splits["val"]
    assert len(xtr) == 150 and len(xval) == 50 and len(dm.splits["test"][0]) == 50
    assert abs(float(xtr.mean())) < 1e-4 and abs(float(xtr.std()) - 1) < 1e-2
    # no training image is in the validation split (the generated images are all distinct)
    flat_tr = {tuple(r.tolist()) for r in xtr.flatten(1)[:, :50]}
    assert not any(tuple(r.tolist()) in flat_tr for r in xval.flatten(1)[:, :50])
    # the same split seed gives the same split
    dm2 = TensorDataModule("mnist", root=tmp_path, verify=False, val_fraction=0.25)
    dm2.setup()
    assert torch.equal(dm2.splits["val"][0], xval)


def test_few_shot_split_merges_and_resplits(tmp_path):
    make_idx_dataset(tmp_path, "MNIST", n_train=300, n_test=100)
    dm = TensorDataModule("mnist", root=tmp_path, verify=False, val_fraction=0.0, test_fraction=0.9)
    dm.setup()
    assert len(dm.splits["test"][0]) == 360 and len(dm.splits["train"][0]) == 40


def test_batches_cover_each_sample_once_per_epoch():
    x = torch.arange(103, dtype=torch.float32).view(-1, 1, 1, 1)
    y = torch.arange(103)
    batches = TensorBatches(x, y, 10, shuffle=True, seed=3)
    assert len(batches) == 11
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(103))
    assert seen.tolist() != list(range(103))  # shuffled
    second = torch.cat([yb for _, yb in batches])
    assert not torch.equal(seen, second)  # a new order every epoch


def test_grouped_batches_are_the_same_batches_in_the_same_order():
    x = torch.arange(103, dtype=torch.float32).view(-1, 1, 1, 1)
    y = torch.arange(103)
    plain = [yb for _, yb in TensorBatches(x, y, 10, shuffle=True, seed=3)]
    grouped = GroupedBatches(TensorBatches(x, y, 10, shuffle=True, seed=3), 4)
    assert grouped.steps == 11 and len(grouped) == 3
    groups = list(grouped)
    assert [len(g) for g in groups] == [4, 4, 3]
    flat = [yb for g in groups for _, yb in g]
    assert len(flat) == len(plain) and all(torch.equal(a, b) for a, b in zip(flat, plain))
    with pytest.raises(ConfigError, match="steps_per_call"):
        GroupedBatches(TensorBatches(x, y, 10, shuffle=False), 0)


def test_rank_shards_are_disjoint_and_equal_sized():
    x = torch.zeros(10, 1, 1, 1)
    y = torch.arange(10)
    shards = [
        torch.cat([b for _, b in TensorBatches(x, y, 4, shuffle=True, seed=0, rank=r, world_size=2)]) for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())


def test_crop_flip_works_on_whole_batches():
    x = torch.randn(16, 3, 32, 32)
    out = crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_bad_data_options():
    with pytest.raises(ConfigError, match="unknown dataset"):
        TensorDataModule("imagenet")
    with pytest.raises(ConfigError, match="norm"):
        TensorDataModule("mnist", norm="zscore")
    with pytest.raises(ConfigError, match="augment"):
        TensorDataModule("mnist", augment=True)
