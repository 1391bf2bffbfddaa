"""One data pipeline for every rule.

Every dataset is registered (``register_dataset``) with its name, image shape, class count and a loader that returns
one official split as arrays; torchvision's datasets are registered the same way, with their own loaders (and
download path). Whatever the loader, its output goes through the same shape, dtype and label checks, is converted
once to normalised float tensors held in memory (on the GPU when there is one) and batched by index, so the hot path
has no per-sample Python. A seeded validation split is carved from the training set.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib
import inspect
import json
import os
import pickle
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from bench.errors import BenchError, ConfigError, DataError
from bench.paths import data_root
from bench.records import atomic_file, atomic_write_text
from methods.steps import StepGroup

DEBIAN_FMNIST = Path(os.environ.get("BENCH_DEBIAN_FMNIST", "/usr/share/datasets/fashion-mnist"))
NORMS = ("standard", "unit")
KINDS = {"torchvision": "torchvision dataset files", "features": "backbone features", "loader": "registered loader"}
"""What a dataset's ``kind`` says in messages."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, int, int]
    """C x H x W of one sample (a vector of D features: D x 1 x 1)."""
    num_classes: int
    loader: Callable[..., tuple[Any, Any]]
    """``loader(root, train) -> (x, y)``: the official training (``train=True``) or test split. ``x``: N x C x H x W,
    N x H x W (one channel) or N x H x W x C, integers or floats (numpy array or tensor); ``y``: N integer labels in
    0..C-1. It may also take keyword arguments ``download`` and ``verify`` (torchvision's loaders do)."""
    scale: float = 255.0
    """Divisor that brings the stored values to about [0, 1] before normalisation (1 for float features)."""
    kind: str = "loader"
    """torchvision (native files read by torchvision), features (computed backbone features) or loader."""
    source: str = ""
    """Where the data comes from (or how to get the files by hand), for error messages."""
    folder: str = ""
    """torchvision datasets: the folder (relative to the data root) holding the native files."""
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        return KINDS.get(self.kind, self.kind)


DATASETS: dict[str, DatasetInfo] = {}
"""Registered datasets by name (``register_dataset``)."""


def register_dataset(
    name: str,
    *,
    shape: tuple[int, ...],
    num_classes: int,
    loader: Callable | None = None,
    scale: float = 255.0,
    source: str = "",
    kind: str = "loader",
    **files: Any,
):
    """Register a dataset: ``register_dataset("digits", shape=(1, 8, 8), num_classes=10, loader=f, scale=16)``, or as a
    decorator of the loader (``@register_dataset("digits", shape=..., num_classes=10, scale=16)``). The loader's output
    goes through the same checks as every dataset's (``load_split``). Registering a name again replaces it."""
    if loader is None:
        return lambda f: (
            register_dataset(
                name, shape=shape, num_classes=num_classes, loader=f, scale=scale, source=source, kind=kind, **files
            ),
            f,
        )[1]
    if not isinstance(name, str) or not name or ":" in name or "," in name:
        raise ConfigError(f"dataset name must be a non-empty string without ':' or ',', got {name!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = (shape[0], 1, 1)
    elif len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"dataset {name!r}: shape is C x H x W (or H x W, or D), got {shape}")
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ConfigError(f"dataset {name!r}: num_classes must be an integer >= 2, got {num_classes!r}")
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ConfigError(f"dataset {name!r}: scale must be > 0, got {scale!r}")
    if not callable(loader):
        raise ConfigError(f"dataset {name!r}: loader must be callable, got {loader!r}")
    info = DatasetInfo(name, shape, num_classes, loader, float(scale), kind, source or _describe(loader), **files)
    DATASETS[name] = info
    load_split.cache_clear()
    return info


def unregister_dataset(name: str) -> None:
    DATASETS.pop(name, None)
    load_split.cache_clear()


def _describe(loader: Callable) -> str:
    f = getattr(loader, "func", loader)
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def _import_modules() -> None:
    """Import the modules named in $BENCH_MODULES (comma-separated): where user datasets (and rules) register
    themselves. Sweep workers and grid processes inherit the variable, so they see the same datasets."""
    for mod in filter(None, (m.strip() for m in os.environ.get("BENCH_MODULES", "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(
                f"BENCH_MODULES names {mod!r}, which cannot be imported ({e}); run from the folder "
                "holding it or put it on PYTHONPATH"
            ) from None


def get_dataset_info(name: str) -> DatasetInfo:
    if ":" in name:  # <backbone>:<dataset>: frozen backbone features (transfer learning)
        from bench.features import feature_info

        return feature_info(name, DatasetInfo, load_split)
    if name not in DATASETS:
        _import_modules()
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (register your own with "
            'bench.data.register_dataset; docs/extending.md, "Adding a dataset")'
        ) from None


# --------------------------------------------------------------------------- reading the native files
def _unverified(cls):
    """torchvision class whose checksum checks only test that the files exist (for generated test files)."""
    attrs = {}
    for key in ("train_list", "test_list"):
        if hasattr(cls, key):
            attrs[key] = [[f, None] for f, _ in getattr(cls, key)]
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [u, f, None] for k, (u, f, _) in cls.split_list.items()}
    if not attrs:  # MNIST-style loaders check no checksums anyway
        return cls
    # same class name: torchvision derives folder names from it (MNIST's raw_folder)
    return type(cls.__name__, (cls,), attrs)


_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_T = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_FMNIST_FOLDER = "FashionMNIST/raw"


# ------------------------------------------------------------------------ checksums of the files we unpack or download
CHECKSUMS = ".bench-sha256.json"
"""Per dataset folder: sha256 and size of each data file, recorded when it was unpacked or downloaded."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_checksums(folder: Path, files: list[str] | tuple[str, ...], source: str) -> None:
    """Record the sha256 of ``files`` (in ``folder``) as they are now, with where they came from."""
    entries = read_checksums(folder)
    for f in files:
        p = folder / f
        entries[f] = {
            "sha256": _sha256(p),
            "size": p.stat().st_size,
            "source": source,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    atomic_write_text(folder / CHECKSUMS, json.dumps(entries, indent=1, sort_keys=True) + "\n")


def damaged(folder: Path, files: tuple[str, ...]) -> dict[str, str]:
    """The files whose size or sha256 differs from the recorded one, with what differs (files with no record are not
    judged here)."""
    entries, bad = read_checksums(folder), {}
    for f in files:
        rec, p = entries.get(f), folder / f
        if not rec or not p.exists():
            continue
        size = p.stat().st_size
        if size != rec.get("size"):
            bad[f] = f"{size} bytes, {rec.get('size')} when recorded"
        elif _sha256(p) != rec.get("sha256"):
            bad[f] = "same size as recorded, different sha256"
    return bad


def _gz_source(info: DatasetInfo, root: Path, f: str) -> Path | None:
    """The compressed original of an unpacked IDX file: torchvision's download keeps ``<file>.gz`` beside it; Debian's
    Fashion-MNIST package has its own copy."""
    if not info.folder.endswith("raw"):
        return None
    for gz in (root / info.folder / f"{f}.gz", *((DEBIAN_FMNIST / f"{f}.gz",) if info.name == "fashion_mnist" else ())):
        if gz.is_file():
            return gz
    return None


def _unpack(gz: Path, dest: Path) -> None:
    """Gunzip ``gz`` into ``dest`` atomically (gzip's CRC check catches a damaged archive)."""
    try:
        with atomic_file(dest) as tmp, gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as e:
        raise DataError(f"cannot unpack {gz}: {e}; reinstall or re-download it") from None


def _gz_digest(gz: Path) -> str:
    h = hashlib.sha256()
    with gzip.open(gz, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _debian_fashion_mnist(root: Path) -> None:
    """Gunzip Debian's Fashion-MNIST copy into root/FashionMNIST/raw when the files are not there yet, recording
    their checksums."""
    raw = root / _FMNIST_FOLDER
    needed = [*_IDX, *_IDX_T]
    if all((raw / f).exists() for f in needed) or not all((DEBIAN_FMNIST / f"{f}.gz").exists() for f in needed):
        return
    raw.mkdir(parents=True, exist_ok=True)
    unpacked = [f for f in needed if not (raw / f).exists()]
    for f in unpacked:
        _unpack(DEBIAN_FMNIST / f"{f}.gz", raw / f)
    record_checksums(raw, unpacked, f"unpacked from {DEBIAN_FMNIST}")


def verify_files(name: str, root: str | os.PathLike | None = None, repair: bool = True) -> list[str]:
    """Check the dataset's files against their recorded checksums (and, for unpacked IDX files without a record,
    against their compressed original). ``repair``: a damaged file is unpacked again from its original and
    re-recorded; without an original (or without ``repair``) it is a ``DataError`` naming the file. Files never
    recorded are recorded now. Returns one line per file repaired."""
    info = get_dataset_info(name)
    rootp = data_root(root)
    folder = rootp / info.folder
    files = tuple(f for f in (*info.train_files, *info.test_files) if (folder / f).exists())
    bad = damaged(folder, files)
    recorded = read_checksums(folder)
    for f in files:  # no record yet: an unpacked file is compared with its original once
        gz = _gz_source(info, rootp, f) if f not in recorded else None
        if gz is not None and _gz_digest(gz) != _sha256(folder / f):
            bad[f] = f"differs from its original {gz}"
    done = []
    for f, why in bad.items():
        gz = _gz_source(info, rootp, f)
        if gz is None or not repair:
            raise DataError(
                f"{name} file {folder / f} is damaged ({why}); "
                + (
                    f"`python -m bench data --datasets {name}` (make data) unpacks it again from {gz}"
                    if gz
                    else f"delete it and get it again from {info.source} (or run with --download)"
                )
            )
        _unpack(gz, folder / f)
        record_checksums(folder, [f], f"unpacked from {gz}")
        done.append(f"{name}: {folder / f} was damaged ({why}); unpacked it again from {gz}")
    fresh = [f for f in files if f not in read_checksums(folder)]
    if fresh:
        record_checksums(folder, fresh, "present when first checked")
    return done


def _check_idx(path: Path) -> str | None:
    """None if ``path`` is a well-formed IDX file, else what is wrong with it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08 or not 1 <= head[3] <= 3:
                return "not an IDX file of unsigned bytes (bad magic number)"
            dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]))
        expected = 4 + 4 * len(dims) + int(np.prod(dims))
        size = path.stat().st_size
        if size != expected:
            return f"truncated or padded: {size} bytes, the header promises {expected}"
    except OSError as e:
        return str(e)
    return None


def _diagnose(info: DatasetInfo, root: Path, files: tuple[str, ...]) -> str:
    folder = root / info.folder
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        return f"missing file(s) {', '.join(str(folder / f) for f in missing)}"
    for f in files:
        p = folder / f
        if info.folder.endswith("raw"):
            problem = _check_idx(p)
        elif f.endswith(".mat"):
            problem = None
            try:
                import scipy.io

                mat = scipy.io.loadmat(p)
                if "X" not in mat or "y" not in mat:
                    problem = "no 'X'/'y' arrays in the .mat file"
            except Exception as e:  # noqa: BLE001 - any failure to parse means a corrupt file
                problem = f"unreadable .mat file ({type(e).__name__}: {e})"
        else:
            problem = None
            try:
                with open(p, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                if "data" not in entry:
                    problem = "pickle without a 'data' entry"
            except Exception as e:  # noqa: BLE001
                problem = f"unreadable pickle ({type(e).__name__}: {e})"
        if problem:
            return f"corrupt file {p}: {problem}"
    return f"files in {folder} failed the checksum test"


def _torchvision_loader(
    name: str, tv_class: str, root: Path, train: bool, download: bool = False, verify: bool = True
) -> tuple[Any, Any]:
    """One split of a torchvision dataset from its native files (Fashion-MNIST: Debian's copy when present)."""
    import torchvision.datasets as tvd

    info = DATASETS[name]
    if name == "fashion_mnist" and not download:
        _debian_fashion_mnist(root)
    files = info.train_files if train else info.test_files
    if verify:  # the files as they were unpacked or downloaded (recorded checksums), before torchvision reads them
        bad = damaged(root / info.folder, files)
        if bad:
            f, why = next(iter(bad.items()))
            gz = _gz_source(info, root, f)
            raise DataError(
                f"{name} file {root / info.folder / f} is damaged ({why}); "
                f"`python -m bench data --datasets {name}` (make data) "
                + (f"unpacks it again from {gz}" if gz else "checks and restores the files")
            )
    cls = getattr(tvd, tv_class)
    if not verify:
        cls = _unverified(cls)
    try:
        if tv_class == "SVHN":
            ds = cls(str(root), split="train" if train else "test", download=download)
            return np.asarray(ds.data), np.asarray(ds.labels)
        ds = cls(str(root), train=train, download=download)
        return ds.data, ds.targets
    except Exception as e:  # noqa: BLE001 - turn any loader failure into one clear message
        if download and isinstance(e, (OSError, RuntimeError)) and "urlopen" in repr(e).lower():
            raise DataError(f"could not download {name} into {root}: {e}. Get the files from {info.source}") from None
        raise DataError(
            f"cannot load {name} ({'train' if train else 'test'} split) from {root}: "
            f"{_diagnose(info, root, files)}. Obtain the files from {info.source}, or run with "
            f"--download (needs internet); set the folder with --data-dir or BENCH_DATA_DIR."
        ) from None


def _call_loader(info: DatasetInfo, root: Path, train: bool, download: bool, verify: bool) -> tuple[Any, Any]:
    """``info.loader(root, train)``, with ``download``/``verify`` when it takes them; any failure of a registered
    loader becomes one DataError naming the dataset and its loader."""
    try:
        params = inspect.signature(info.loader).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in (("download", download), ("verify", verify)) if takes_all or k in params}
    try:
        out = info.loader(root, train, **kwargs)
    except BenchError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's loader failing is a data problem, said in one line
        raise DataError(
            f"{info.name} ({info.what} {_describe(info.loader)}, {'train' if train else 'test'} split) "
            f"failed: {type(e).__name__}: {e}"
        ) from None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise DataError(
            f"{info.name} ({info.what} {_describe(info.loader)}) must return (images, labels), got {type(out).__name__}"
        )
    return out[0], out[1]


def check_split(info: DatasetInfo, x: Any, y: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The checks every dataset's split goes through, whatever its loader: images N x C x H x W (N x H x W and
    channels-last N x H x W x C are brought to it) of a real numeric dtype and finite, N integer labels in 0..C-1.
    Returns (x, y) as contiguous tensors, y int64. ``where`` names the data in messages."""
    try:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{where}: images and labels must be arrays ({type(e).__name__}: {e})") from None
    if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or x.dtype in _INT_TYPES):
        raise DataError(f"{where}: images of dtype {x.dtype}; expected integers (e.g. uint8) or floats")
    c = info.shape[0]
    if x.ndim == 3 and c == 1:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] == c and x.shape[1] != c:
        x = x.permute(0, 3, 1, 2)
    if x.ndim == 2 and info.shape[1:] == (1, 1):  # feature vectors N x D
        x = x[:, :, None, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if tuple(x.shape[1:]) != info.shape or y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"{where} hold images of shape {tuple(x.shape)} and labels of shape {tuple(y.shape)}; "
            f"expected N x {'x'.join(map(str, info.shape))} images with N labels"
        )
    if len(x) == 0:
        raise DataError(f"{where} hold no samples")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise DataError(f"{where}: labels must be integers (class indices), got non-integral {y.dtype} values")
    elif y.dtype not in _INT_TYPES:
        raise DataError(f"{where}: labels of dtype {y.dtype}; expected integer class indices")
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= info.num_classes:
        raise DataError(
            f"{where}: labels fall outside 0..{info.num_classes - 1} (found {int(y.min())}..{int(y.max())})"
        )
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{where}: images hold NaN or inf values")
    return x.contiguous(), y.contiguous()


_INT_TYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@functools.lru_cache(maxsize=8)
def load_split(
    name: str, root: str, train: bool, download: bool = False, verify: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N x C x H x W, the loader's dtype) and labels (int64) of one official split, through the dataset's
    loader and ``check_split``."""
    info = get_dataset_info(name)
    rootp = Path(root)
    x, y = _call_loader(info, rootp, train, download, verify)
    split = "train" if train else "test"
    where = (
        f"{name} files in {rootp / info.folder}"
        if info.kind == "torchvision"
        else f"{name} ({info.what} {_describe(info.loader)}, {split} split)"
    )
    return check_split(info, x, y, where)


def _torchvision(
    name: str,
    tv_class: str,
    shape: tuple[int, int, int],
    num_classes: int,
    folder: str,
    train_files: tuple[str, ...],
    test_files: tuple[str, ...],
    source: str,
) -> None:
    register_dataset(
        name,
        shape=shape,
        num_classes=num_classes,
        kind="torchvision",
        source=source,
        loader=functools.partial(_torchvision_loader, name, tv_class),
        folder=folder,
        train_files=train_files,
        test_files=test_files,
    )


_torchvision(
    "mnist",
    "MNIST",
    (1, 28, 28),
    10,
    "MNIST/raw",
    _IDX,
    _IDX_T,
    "https://ossci-datasets.s3.amazonaws.com/mnist/ (the 4 IDX files, gunzipped)",
)
_torchvision(
    "kmnist",
    "KMNIST",
    (1, 28, 28),
    10,
    "KMNIST/raw",
    _IDX,
    _IDX_T,
    "http://codh.rois.ac.jp/kmnist/dataset/kmnist/ (the 4 IDX files, gunzipped)",
)
_torchvision(
    "fashion_mnist",
    "FashionMNIST",
    (1, 28, 28),
    10,
    _FMNIST_FOLDER,
    _IDX,
    _IDX_T,
    "Debian: apt-get install dataset-fashion-mnist (used automatically), or "
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (gunzip the 4 files)",
)
_torchvision(
    "cifar10",
    "CIFAR10",
    (3, 32, 32),
    10,
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract into the data root)",
)
_torchvision(
    "cifar100",
    "CIFAR100",
    (3, 32, 32),
    100,
    "cifar-100-python",
    ("train",),
    ("test",),
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extract into the data root)",
)
_torchvision(
    "svhn",
    "SVHN",
    (3, 32, 32),
    10,
    ".",
    ("train_32x32.mat",),
    ("test_32x32.mat",),
    "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat and test_32x32.mat)",
)


# --------------------------------------------------------------------------- batching
class TensorBatches:
    """Iterate (x, y) minibatches of in-memory tensors by index.

    Shuffling draws one permutation per epoch from a seeded generator; ``augment`` is a function of a
    whole batch. With ``world_size > 1`` every rank gets an equal share of each epoch's permutation
    (padded by wrapping around, as torch's DistributedSampler does). ``pad=False`` (evaluation) gives every
    sample to exactly one rank instead, so accuracies summed over ranks count each sample once.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        augment=None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator(device=x.device)
        self.generator.manual_seed(seed)
        self.pad = pad
        self.per_rank = -(-len(x) // world_size) if pad else len(range(rank, len(x), world_size))

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle or self.world_size > 1:
            order = (
                torch.randperm(n, generator=self.generator, device=self.x.device)
                if self.shuffle
                else torch.arange(n, device=self.x.device)
            )
            if self.world_size > 1 and not self.pad:
                order = order[self.rank :: self.world_size]
            elif self.world_size > 1:
                total = self.per_rank * self.world_size
                order = torch.cat([order, order[: total - n]])[self.rank : total : self.world_size]
            for i in range(0, len(order), self.batch_size):
                idx = order[i : i + self.batch_size]
                xb = self.x[idx]
                yield (self.augment(xb, self.generator) if self.augment else xb), self.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                xb = self.x[i : i + self.batch_size]
                yield (self.augment(xb, self.generator) if self.augment else xb), self.y[i : i + self.batch_size]


class GroupedBatches:
    """``batches`` (a ``TensorBatches``) in groups of ``k`` consecutive batches (the last group may be shorter): the
    same batches in the same order, one Lightning loop iteration per group. ``steps`` is the number of batches (the
    optimiser steps of an epoch)."""

    def __init__(self, batches: TensorBatches, k: int):
        if k < 1:
            raise ConfigError(f"steps_per_call must be >= 1, got {k}")
        self.batches, self.k = batches, k

    @property
    def steps(self) -> int:
        return len(self.batches)

    def __len__(self) -> int:
        return -(-len(self.batches) // self.k)

    def __iter__(self) -> Iterator[StepGroup]:
        group = StepGroup()
        for batch in self.batches:
            group.append(batch)
            if len(group) == self.k:
                yield group
                group = StepGroup()
        if group:
            yield group


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of a whole batch, on its device."""
    b, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, x.shape[1], h, w + 2 * pad)
    xp = xp.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, x.shape[1], h, w)
    xp = xp.gather(3, cols)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], xp.flip(3), xp)


# --------------------------------------------------------------------------- the data module
class TensorDataModule(L.LightningDataModule):
    """Train / validation / test splits of one dataset as normalised tensors in memory.

    ``val_fraction`` of the official training set (a split fixed by ``split_seed``) is held out for
    validation: tuning never sees test data. ``test_fraction`` (the few-shot protocol of SPELA Sec. 4.2)
    instead merges the official train and test sets and re-splits them at random. ``steps_per_call > 1``: the
    training loader yields groups of that many consecutive batches (``GroupedBatches``), which the shared loop
    trains one after another in one ``training_step`` call; the batches and their order do not change.
    """

    def __init__(
        self,
        dataset: str,
        *,
        root: str | os.PathLike | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        norm: str = "standard",
        augment: bool = False,
        download: bool = False,
        verify: bool = True,
        limit_train: int | None = None,
        limit_eval: int | None = None,
        test_fraction: float | None = None,
        device: str | torch.device | None = None,
        steps_per_call: int = 1,
    ):
        super().__init__()
        self.info = get_dataset_info(dataset)
        if norm not in NORMS:
            raise ConfigError(f"norm={norm!r}; choose one of {', '.join(NORMS)}")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if test_fraction is not None and not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")
        if steps_per_call < 1:
            raise ConfigError(f"steps_per_call must be >= 1, got {steps_per_call}")
        self.steps_per_call = steps_per_call
        if augment and self.info.shape[0] != 3:
            raise ConfigError(f"augment (crop + flip) is for the 32x32 colour datasets, not {dataset}")
        self.root = data_root(root)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.split_seed, self.seed = val_fraction, split_seed, seed
        self.norm, self.augment = norm, augment
        self.download, self.verify = download, verify
        self.limit_train, self.limit_eval, self.test_fraction = limit_train, limit_eval, test_fraction
        self._device = torch.device(device) if device is not None else None
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return self.info.shape

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def _device_now(self) -> torch.device:
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return self._device or torch.device("cpu")

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                load_split(self.info.name, str(self.root), train, True, self.verify)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        name, root = self.info.name, str(self.root)
        x_tr, y_tr = load_split(name, root, True, False, self.verify)
        x_te, y_te = load_split(name, root, False, False, self.verify)
        g = torch.Generator().manual_seed(self.split_seed)
        if self.test_fraction is not None:
            x_all, y_all = torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te])
            perm = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(self.seed))
            n_test = round(self.test_fraction * len(x_all))
            x_te, y_te = x_all[perm[:n_test]], y_all[perm[:n_test]]
            x_tr, y_tr = x_all[perm[n_test:]], y_all[perm[n_test:]]
        perm = torch.randperm(len(x_tr), generator=g)
        n_val = round(self.val_fraction * len(x_tr))
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        if self.limit_train is not None:
            tr_idx = tr_idx[: self.limit_train]
        if self.limit_eval is not None:
            val_idx = val_idx[: self.limit_eval]
            x_te, y_te = x_te[: self.limit_eval], y_te[: self.limit_eval]
        x_train = x_tr[tr_idx]
        if len(x_train) == 0:
            raise ConfigError(
                f"no training samples left (limit_train={self.limit_train}, val_fraction={self.val_fraction})"
            )
        scale = self.info.scale
        if self.norm == "standard":
            xf = x_train.float() / scale
            mean = xf.mean(dim=(0, 2, 3), keepdim=True)
            std = xf.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        else:
            mean, std = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
        dev = self._device_now()

        def prep(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return ((x.float() / scale - mean) / std).to(dev).contiguous(), y.to(dev)

        self.splits = {
            "train": prep(x_train, y_tr[tr_idx]),
            "val": prep(x_tr[val_idx], y_tr[val_idx]),
            "test": prep(x_te, y_te),
        }

    def _rank(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return 0, 1

    def train_dataloader(self) -> TensorBatches | GroupedBatches:
        rank, world = self._rank()
        batches = TensorBatches(
            *self.splits["train"],
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            augment=crop_flip if self.augment else None,
            rank=rank,
            world_size=world,
        )
        return GroupedBatches(batches, self.steps_per_call) if self.steps_per_call > 1 else batches

    def val_dataloader(self) -> TensorBatches:
        rank, world = self._rank()
        return TensorBatches(
            *self.splits["val"], self.eval_batch_size, shuffle=False, rank=rank, world_size=world, pad=False
        )

    def test_dataloader(self) -> TensorBatches:
        rank, world = self._rank()
        return TensorBatches(
            *self.splits["test"], self.eval_batch_size, shuffle=False, rank=rank, world_size=world, pad=False
        )


def ensure_data(name: str, root: str | os.PathLike | None = None, download: bool = True) -> str:
    """Make the dataset's files present: Debian's package for Fashion-MNIST when apt is usable, else
    torchvision's download (features: computed and cached; a registered loader: loaded and checked). Returns what it
    did, for the log."""
    import subprocess

    info = get_dataset_info(name)
    rootp = data_root(root)
    if info.kind != "torchvision":
        n_train = len(load_split(name, str(rootp), True, download, True)[0])
        x, _ = load_split(name, str(rootp), False, download, True)
        where = f" under {rootp / 'features'}" if info.kind == "features" else f" ({_describe(info.loader)})"
        what = "features ready" if info.kind == "features" else "loaded and checked"
        return f"{name}: {what}, {n_train} train and {len(x)} test samples of {tuple(x.shape[1:])}{where}"
    if name == "fashion_mnist":
        _debian_fashion_mnist(rootp)
    folder = rootp / info.folder
    if all((folder / f).exists() for f in (*info.train_files, *info.test_files)):
        repaired = verify_files(name, rootp)
        for train in (True, False):  # torchvision's own checks (CIFAR/SVHN md5s), and that the files parse
            load_split.__wrapped__(name, str(rootp), train, False, True)
        return "\n".join([*repaired, f"{name}: files present in {folder}, checksums verified"])
    if name == "fashion_mnist" and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:  # the package index may be stale on a fresh machine
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env, capture_output=True)
        _debian_fashion_mnist(rootp)
        if all((folder / f).exists() for f in (*info.train_files, *info.test_files)):
            return f"{name}: installed Debian's dataset-fashion-mnist and unpacked it into {folder}"
    for train in (True, False):
        load_split(name, str(rootp), train, True, True)
    files = [f for f in (*info.train_files, *info.test_files) if (folder / f).exists()]
    record_checksums(folder, files, "downloaded with torchvision")
    return f"{name}: downloaded with torchvision into {rootp}"
