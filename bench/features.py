"""Frozen backbone features as datasets, for transfer learning (SPELA Sec. 4.3, App. B.2).

A dataset named ``<backbone>:<source>`` (``resnet50:flowers102``) holds, for every image of the source dataset's
official train and test splits, the backbone's penultimate-layer features (ResNet-50: the 2048 averaged-pooled
channels before ``fc``). They are computed once, cached under ``<data>/features/<backbone>/`` and served as
N x 2048 x 1 x 1 float tensors through the same ``TensorDataModule`` and run function as every other dataset, so
the head is trained, split (``test_fraction``), logged and reported like any other run.

Backbones: ``resnet50`` (torchvision's ImageNet weights ``IMAGENET1K_V1``, the classic ``pretrained=True``; SPELA
does not say which) and ``resnet50_random`` (the same network randomly initialised with seed 0: a pipeline check that
needs no download). Preprocessing is torchvision's ImageNet evaluation transform: shorter side resized to 256/224 of
the input size, centre crop, ImageNet mean/std; CIFAR-10's 32x32 images are resized to the input size directly.
The input size is 224 (``BENCH_FEATURE_SIZE`` changes it, e.g. for quick checks).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.errors import ConfigError, DataError
from bench.records import atomic_file

BACKBONES = {"resnet50": "IMAGENET1K_V1", "resnet50_random": None}
"""Backbone name -> torchvision weights enum member (None: random initialisation, seed 0)."""
FEATURE_DIM = {"resnet50": 2048, "resnet50_random": 2048}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Source:
    """An image dataset features can be computed from."""

    tv_class: str | None
    """torchvision dataset class; None: one of bench.data's in-memory datasets (same name)."""
    num_classes: int
    train: tuple[dict, ...]
    """Keyword arguments of the torchvision class for the official training split (several are concatenated)."""
    test: tuple[dict, ...]
    folder: str
    where: str
    """Where to get the files by hand."""


SOURCES: dict[str, Source] = {
    "cifar10": Source(None, 10, (), (), "cifar-10-batches-py", "see the cifar10 dataset"),
    "aircraft": Source(
        "FGVCAircraft",
        100,
        ({"split": "trainval", "annotation_level": "variant"},),
        ({"split": "test", "annotation_level": "variant"},),
        "fgvc-aircraft-2013b",
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (extract into the data root)",
    ),
    "flowers102": Source(
        "Flowers102",
        102,
        ({"split": "train"}, {"split": "val"}),
        ({"split": "test"},),
        "flowers-102",
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz, "
        "imagelabels.mat, setid.mat into <data>/flowers-102)",
    ),
    "pets": Source(
        "OxfordIIITPet",
        37,
        ({"split": "trainval"},),
        ({"split": "test"},),
        "oxford-iiit-pet",
        "https://www.robots.ox.ac.uk/~vgg/data/pets/ (images and annotations into <data>/oxford-iiit-pet)",
    ),
    "food101": Source(
        "Food101",
        101,
        ({"split": "train"},),
        ({"split": "test"},),
        "food-101",
        "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (extract into the data root)",
    ),
}


def feature_size() -> int:
    return int(os.environ.get("BENCH_FEATURE_SIZE", "224"))


@functools.cache
def feature_info(name: str, info_cls: type, load_split):
    """The dataset description (``info_cls``: bench.data's DatasetInfo) of ``<backbone>:<source>``; ``load_split`` reads
    a source's images (bench.data's loader, passed in: this module does not import bench.data)."""
    backbone, _, source = name.partition(":")
    if backbone not in BACKBONES or source not in SOURCES:
        raise ConfigError(
            f"unknown dataset {name!r}: feature datasets are <backbone>:<source> with backbone one of "
            f"{', '.join(BACKBONES)} and source one of {', '.join(SOURCES)}"
        )
    src = SOURCES[source]
    return info_cls(
        name,
        (FEATURE_DIM[backbone], 1, 1),
        src.num_classes,
        functools.partial(load_features, backbone, source, load_split=load_split),
        scale=1.0,
        kind="features",
        source=f"computed from {source} ({src.where}) by {backbone}",
        folder=f"features/{backbone}",
    )


def weights_file(backbone: str) -> tuple[Path, str]:
    """Where torch hub keeps the backbone's pretrained weights, and their URL."""
    import torchvision.models as tvm

    w = tvm.ResNet50_Weights[BACKBONES[backbone]]
    return Path(torch.hub.get_dir()) / "checkpoints" / w.url.rsplit("/", 1)[-1], w.url


def build_backbone(backbone: str, download: bool = False) -> nn.Module:
    """The frozen feature extractor (eval mode, ``fc`` removed). Pretrained weights come from the torch hub cache;
    a missing file is downloaded only with ``download``, else a DataError says which file to put where."""
    import torchvision.models as tvm

    if BACKBONES[backbone] is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = tvm.resnet50(weights=None)
    else:
        path, url = weights_file(backbone)
        if not path.exists():
            hint = (
                f"the ImageNet weights of {backbone} ({BACKBONES[backbone]}) are not in the torch hub cache: put "
                f"{path.name} (from {url}) into {path.parent} (torch.hub.get_dir(); $TORCH_HOME moves it)"
            )
            if not download:
                raise DataError(f"{hint}, or run with --download (make data downloads it)")
            try:
                torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
            except Exception as e:  # noqa: BLE001 - any failure to fetch means: put it there by hand
                raise DataError(f"{hint}; the download failed ({type(e).__name__}: {e})") from None
        model = tvm.resnet50(weights=None)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001
            raise DataError(
                f"{path} is not a usable {backbone} state dict ({type(e).__name__}: {e}); delete it "
                f"and put the file from {weights_file(backbone)[1]} there"
            ) from None
    model.fc = nn.Identity()
    return model.eval().requires_grad_(False)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _tensor_batches(
    source: str, root: Path, train: bool, download: bool, verify: bool, size: int, batch: int, load_split
):
    """CIFAR-10 from bench.data's loader: uint8 32x32 images resized to ``size`` (bilinear, antialiased)."""
    x, y = load_split(source, str(root), train, download, verify)
    for i in range(0, len(x), batch):
        xb = torch.nn.functional.interpolate(
            x[i : i + batch].float() / 255.0, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        yield _normalise(xb), y[i : i + batch]


def _image_batches(src: Source, root: Path, train: bool, download: bool, size: int, batch: int):
    """A torchvision image dataset through the ImageNet evaluation transform."""
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    tf = T.Compose(
        [T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    cls = getattr(tvd, src.tv_class)
    parts = []
    for kwargs in src.train if train else src.test:
        try:
            parts.append(cls(str(root), transform=tf, download=download, **kwargs))
        except Exception as e:  # noqa: BLE001 - any loader failure: say where the files go
            raise DataError(
                f"cannot load {src.tv_class} ({kwargs.get('split')}) from {root / src.folder}: "
                f"{type(e).__name__}: {e}. Obtain the files from {src.where}, or run with --download "
                "(needs internet; make data does it)"
            ) from None
    loader = torch.utils.data.DataLoader(
        torch.utils.data.ConcatDataset(parts), batch_size=batch, shuffle=False, num_workers=0
    )
    for xb, yb in loader:
        yield xb, torch.as_tensor(yb, dtype=torch.long)


def cache_path(root: Path, backbone: str, source: str, train: bool, size: int) -> Path:
    return Path(root) / "features" / backbone / f"{source}_{'train' if train else 'test'}_{size}px.pt"


def load_features(
    backbone: str,
    source: str,
    root: Path,
    train: bool,
    download: bool = False,
    verify: bool = True,
    batch: int = 64,
    *,
    load_split,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N x D x 1 x 1, float32) and labels of one official split, from the cache or computed into it."""
    size = feature_size()
    path = cache_path(root, backbone, source, train, size)
    meta = {"backbone": backbone, "weights": BACKBONES[backbone], "source": source, "train": train, "size": size}
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("meta") == meta:
                return saved["x"], saved["y"]
        except Exception:  # noqa: BLE001 - a damaged cache is recomputed
            pass
    src = SOURCES[source]
    batches = (
        _tensor_batches(source, root, train, download, verify, size, batch, load_split)
        if src.tv_class is None
        else _image_batches(src, root, train, download, size, batch)
    )
    model = build_backbone(backbone, download)
    feats, labels = [], []
    with torch.no_grad():
        for xb, yb in batches:
            feats.append(model(xb))
            labels.append(yb)
    if not feats:
        raise DataError(f"{source} ({'train' if train else 'test'} split) in {root} has no images")
    x = torch.cat(feats).float().reshape(-1, FEATURE_DIM[backbone], 1, 1).contiguous()
    y = torch.cat(labels).long()
    with atomic_file(path) as tmp:
        torch.save({"x": x, "y": y, "meta": meta}, tmp)
    return x, y
