"""Write small datasets in each dataset's native format (IDX, CIFAR pickle batches, SVHN .mat).

Images are learnable: each class is a fixed random pattern plus noise, so a short run must beat chance.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _images(
    n: int, shape: tuple[int, ...], num_classes: int, seed: int, signal: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """``signal`` x the class pattern + (1 - signal) x uniform noise, in 0..255."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(1234).uniform(0, 255, size=(num_classes, *shape))
    y = rng.integers(0, num_classes, size=n)
    x = np.clip(protos[y] * signal + rng.uniform(0, 255, size=(n, *shape)) * (1 - signal), 0, 255).astype(np.uint8)
    return x, y


def write_idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def make_idx_dataset(
    root: Path, folder: str = "MNIST", n_train: int = 600, n_test: int = 200, signal: float = 0.7
) -> Path:
    """The four gunzipped IDX files torchvision's MNIST/KMNIST/FashionMNIST read, under root/<folder>/raw."""
    raw = root / folder / "raw"
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = _images(n, (28, 28), 10, seed, signal)
        write_idx(raw / f"{split}-images-idx3-ubyte", x)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    return raw


def make_cifar_dataset(
    root: Path, num_classes: int = 10, n_train: int = 500, n_test: int = 100, signal: float = 0.7
) -> Path:
    """CIFAR-10 (5 data batches + test_batch + batches.meta) or CIFAR-100 (train, test, meta) pickles."""
    folder = root / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if num_classes == 10 else "fine_labels"

    def dump(name: str, n: int, seed: int) -> None:
        x, y = _images(n, (3, 32, 32), num_classes, seed, signal)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x.reshape(n, -1), label_key: y.tolist()}, f)

    if num_classes == 10:
        for i in range(1, 6):
            dump(f"data_batch_{i}", n_train // 5, i)
        dump("test_batch", n_test, 99)
        meta = {"label_names": [f"c{i}" for i in range(10)]}
        meta_name = "batches.meta"
    else:
        dump("train", n_train, 0)
        dump("test", n_test, 99)
        meta = {"fine_label_names": [f"c{i}" for i in range(100)]}
        meta_name = "meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f)
    return folder


def make_svhn_dataset(root: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """train_32x32.mat / test_32x32.mat: X is 32x32x3xN, y in 1..10 (10 stands for digit 0)."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, 1)):
        x, y = _images(n, (32, 32, 3), 10, seed)
        y = np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)
        scipy.io.savemat(root / name, {"X": np.transpose(x, (1, 2, 3, 0)), "y": y})
    return root
