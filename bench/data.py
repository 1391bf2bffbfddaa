"""One data pipeline for every rule.

Datasets are read with torchvision's own loaders (and its download path), converted once to
normalised float tensors held in memory (on the GPU when there is one) and batched by index, so
the hot path has no per-sample Python. A seeded validation split is carved from the training set.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import pickle
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch

from bench.errors import ConfigError, DataError
from bench.paths import data_root

DEBIAN_FMNIST = Path(os.environ.get("BENCH_DEBIAN_FMNIST", "/usr/share/datasets/fashion-mnist"))
NORMS = ("standard", "unit")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    tv_class: str
    """torchvision.datasets class name."""
    shape: tuple[int, int, int]
    num_classes: int
    folder: str
    """Folder (relative to the data root) holding the native files."""
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    source: str
    """Where to get the files by hand."""
    scale: float = 255.0
    """Divisor that brings the stored values to about [0, 1] before normalisation (1 for float features)."""
    loader: Any = None
    """Derived datasets (e.g. backbone features): ``loader(root, train, download, verify) -> (x, y)`` replaces the
    torchvision loader; x is N x C x H x W."""


_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_T = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", (1, 28, 28), 10, "MNIST/raw", _IDX, _IDX_T,
                         "https://ossci-datasets.s3.amazonaws.com/mnist/ (the 4 IDX files, gunzipped)"),
    "kmnist": DatasetInfo("kmnist", "KMNIST", (1, 28, 28), 10, "KMNIST/raw", _IDX, _IDX_T,
                          "http://codh.rois.ac.jp/kmnist/dataset/kmnist/ (the 4 IDX files, gunzipped)"),
    "fashion_mnist": DatasetInfo("fashion_mnist", "FashionMNIST", (1, 28, 28), 10, "FashionMNIST/raw", _IDX, _IDX_T,
                                 "Debian: apt-get install dataset-fashion-mnist (used automatically), or "
                                 "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (gunzip the 4 files)"),
    "cifar10": DatasetInfo("cifar10", "CIFAR10", (3, 32, 32), 10, "cifar-10-batches-py",
                           tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract into the data root)"),
    "cifar100": DatasetInfo("cifar100", "CIFAR100", (3, 32, 32), 100, "cifar-100-python", ("train",), ("test",),
                            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extract into the data root)"),
    "svhn": DatasetInfo("svhn", "SVHN", (3, 32, 32), 10, ".", ("train_32x32.mat",), ("test_32x32.mat",),
                        "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat and test_32x32.mat)"),
}


def get_dataset_info(name: str) -> DatasetInfo:
    if ":" in name:  # <backbone>:<dataset>: frozen backbone features (transfer learning)
        from bench.features import feature_info

        return feature_info(name)
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


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


# --------------------------------------------------------------------------- checksums of the files we unpack or download
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
        entries[f] = {"sha256": _sha256(p), "size": p.stat().st_size, "source": source,
                      "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = folder / f"{CHECKSUMS}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    tmp.replace(folder / CHECKSUMS)


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
    tmp = dest.with_name(f"{dest.name}.part{os.getpid()}")
    try:
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot unpack {gz}: {e}; reinstall or re-download it") from None
    tmp.replace(dest)


def _gz_digest(gz: Path) -> str:
    h = hashlib.sha256()
    with gzip.open(gz, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _debian_fashion_mnist(root: Path) -> None:
    """Gunzip Debian's Fashion-MNIST copy into root/FashionMNIST/raw when the files are not there yet, recording
    their checksums."""
    raw = root / DATASETS["fashion_mnist"].folder
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
            raise DataError(f"{name} file {folder / f} is damaged ({why}); "
                            + (f"`python -m bench data --datasets {name}` (make data) unpacks it again from {gz}"
                               if gz else f"delete it and get it again from {info.source} (or run with --download)"))
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


@functools.lru_cache(maxsize=8)
def load_split(name: str, root: str, train: bool, download: bool = False, verify: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x C x H x W) and labels (int64) of one official split, via torchvision's loader."""
    import torchvision.datasets as tvd

    info = get_dataset_info(name)
    rootp = Path(root)
    if info.loader is not None:
        return info.loader(rootp, train, download, verify)
    if name == "fashion_mnist" and not download:
        _debian_fashion_mnist(rootp)
    files = info.train_files if train else info.test_files
    if verify:  # the files as they were unpacked or downloaded (recorded checksums), before torchvision reads them
        bad = damaged(rootp / info.folder, files)
        if bad:
            f, why = next(iter(bad.items()))
            gz = _gz_source(info, rootp, f)
            raise DataError(f"{name} file {rootp / info.folder / f} is damaged ({why}); "
                            f"`python -m bench data --datasets {name}` (make data) "
                            + (f"unpacks it again from {gz}" if gz else "checks and restores the files"))
    cls = getattr(tvd, info.tv_class)
    if not verify:
        cls = _unverified(cls)
    try:
        if name == "svhn":
            ds = cls(str(rootp), split="train" if train else "test", download=download)
            x, y = np.asarray(ds.data), np.asarray(ds.labels)
        else:
            ds = cls(str(rootp), train=train, download=download)
            x, y = ds.data, ds.targets
    except Exception as e:  # noqa: BLE001 - turn any loader failure into one clear message
        if download and isinstance(e, (OSError, RuntimeError)) and "urlopen" in repr(e).lower():
            raise DataError(f"could not download {name} into {rootp}: {e}. Get the files from {info.source}") from None
        raise DataError(f"cannot load {name} ({'train' if train else 'test'} split) from {rootp}: "
                        f"{_diagnose(info, rootp, files)}. Obtain the files from {info.source}, or run with "
                        f"--download (needs internet); set the folder with --data-dir or BENCH_DATA_DIR.") from None
    x = torch.as_tensor(np.asarray(x))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if tuple(x.shape[1:]) != info.shape or len(x) != len(y):
        raise DataError(f"{name} files in {rootp / info.folder} hold images of shape {tuple(x.shape)} and "
                        f"{len(y)} labels; expected N x {info.shape} with N labels")
    if y.min() < 0 or y.max() >= info.num_classes:
        raise DataError(f"{name} labels in {rootp / info.folder} fall outside 0..{info.num_classes - 1}")
    return x.contiguous(), y


# --------------------------------------------------------------------------- batching
class TensorBatches:
    """Iterate (x, y) minibatches of in-memory tensors by index.

    Shuffling draws one permutation per epoch from a seeded generator; ``augment`` is a function of a
    whole batch. With ``world_size > 1`` every rank gets an equal share of each epoch's permutation
    (padded by wrapping around, as torch's DistributedSampler does). ``pad=False`` (evaluation) gives every
    sample to exactly one rank instead, so accuracies summed over ranks count each sample once.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int = 0,
                 augment=None, rank: int = 0, world_size: int = 1, pad: bool = True):
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
            order = (torch.randperm(n, generator=self.generator, device=self.x.device) if self.shuffle
                     else torch.arange(n, device=self.x.device))
            if self.world_size > 1 and not self.pad:
                order = order[self.rank::self.world_size]
            elif self.world_size > 1:
                total = self.per_rank * self.world_size
                order = torch.cat([order, order[: total - n]])[self.rank:total:self.world_size]
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                xb = self.x[idx]
                yield (self.augment(xb, self.generator) if self.augment else xb), self.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                xb = self.x[i:i + self.batch_size]
                yield (self.augment(xb, self.generator) if self.augment else xb), self.y[i:i + self.batch_size]


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
    instead merges the official train and test sets and re-splits them at random.
    """

    def __init__(self, dataset: str, *, root: str | os.PathLike | None = None, batch_size: int = 64,
                 eval_batch_size: int = 1000, val_fraction: float = 0.1, split_seed: int = 0, seed: int = 0,
                 norm: str = "standard", augment: bool = False, download: bool = False, verify: bool = True,
                 limit_train: int | None = None, limit_eval: int | None = None, test_fraction: float | None = None,
                 device: str | torch.device | None = None):
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
            raise ConfigError(f"no training samples left (limit_train={self.limit_train}, val_fraction={self.val_fraction})")
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

        self.splits = {"train": prep(x_train, y_tr[tr_idx]), "val": prep(x_tr[val_idx], y_tr[val_idx]),
                       "test": prep(x_te, y_te)}

    def _rank(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return 0, 1

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._rank()
        return TensorBatches(*self.splits["train"], self.batch_size, shuffle=True, seed=self.seed,
                             augment=crop_flip if self.augment else None, rank=rank, world_size=world)

    def val_dataloader(self) -> TensorBatches:
        rank, world = self._rank()
        return TensorBatches(*self.splits["val"], self.eval_batch_size, shuffle=False, rank=rank, world_size=world,
                             pad=False)

    def test_dataloader(self) -> TensorBatches:
        rank, world = self._rank()
        return TensorBatches(*self.splits["test"], self.eval_batch_size, shuffle=False, rank=rank, world_size=world,
                             pad=False)


def ensure_data(name: str, root: str | os.PathLike | None = None, download: bool = True) -> str:
    """Make the dataset's files present: Debian's package for Fashion-MNIST when apt is usable, else
    torchvision's download (derived datasets: computed and cached). Returns what it did, for the log."""
    import subprocess

    info = get_dataset_info(name)
    rootp = data_root(root)
    if info.loader is not None:
        for train in (True, False):
            x, _ = load_split(name, str(rootp), train, download, True)
        return f"{name}: features ready ({len(x)} test samples, {tuple(x.shape[1:])}) under {rootp / 'features'}"
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
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env,
                              capture_output=True, text=True)
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
