"""Named grid profiles behind ``make bench PROFILE=...`` (data, not code paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import methods.forward_gradient as fg
from bench.errors import ConfigError
from bench.protocol import V1


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    seeds: tuple[int, ...] = (0,)
    epochs: int | None = None
    """Epochs of every run; None: each rule's own ``paper_epochs``."""
    methods: tuple[str, ...] | None = None
    """Rules to run when METHODS is not given; None: every registered rule."""
    run: dict[str, Any] = field(default_factory=dict)
    """Other RunConfig fields (e.g. limit_train, test_fraction)."""
    variants: tuple[dict[str, Any], ...] = ()
    """Settings every (dataset, method, seed) run is repeated with; empty: one run each. A variant holds RunConfig
    fields (``test_fraction``, ``epochs``, ``val_fraction``, ...) and optionally ``arch`` (an arch string; ARCH
    wins), ``arch_options`` (appended to the run's arch, e.g. ``{"binary": 1}``), ``rule`` (rule options; SET wins)
    and ``methods`` / ``datasets`` (the variant applies to these only; a source name covers its feature datasets).
    A variant's arch that a rule cannot train is skipped (with a note), not an error; runs that come out identical
    are run once."""
    datasets: tuple[str, ...] | None = None
    """Datasets when DATASET is not given; None: fashion_mnist."""
    method_epochs: dict[str, int] = field(default_factory=dict)
    """Epochs of a rule's runs when neither EPOCHS nor a variant sets them (before ``epochs``)."""
    exact: bool = False
    """The variants fix every setting (PROFILE=claims): no tuned options, and ARCH, EPOCHS and SET are refused."""


FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
"""Test fractions of the few-shot protocol (SPELA Sec. 4.2, Fig. 5; transfer Fig. 6)."""
SEEDS5 = (0, 1, 2, 3, 4)
FG_GRID = ("bp", *fg.GRID)
"""BP beside the forward-gradient grid cells (the rule family's own data: methods/forward_gradient.py)."""
FG_WITH_HEADS = fg.WITH_HEADS
"""Grid cells with auxiliary heads (local guess, NTK guess or local target): Fournier's rows Local/NTK x
CNN/MLP/Linear."""
TRANSFER = {"aircraft": "large", "flowers102": "large", "food101": "large", "pets": "small", "cifar10": "small"}
"""SPELA App. B.2: > 50 classes: 2048-1024-1024 (SPELA(O)), BP with an extra C-way head; < 50 classes: 2048-512-64."""
_HEADS = {"large": ("mlp:1024-1024", "mlp:1024-1024-C"), "small": ("mlp:512-64", "mlp:512-64-C")}


from methods.spela import AUTHORS_CODE_ARCH as SPELA_CODE_ARCH  # noqa: E402 - the rule owns its authors' recipe
from methods.spela import AUTHORS_CODE_RULE as SPELA_CODE_RULE  # noqa: E402
from methods.spela import AUTHORS_CODE_RUN as SPELA_CODE_RUN  # noqa: E402

CPU_EPOCHS = dict(V1.eval_epochs)
"""Epochs per rule of the CPU results set where 5 is too many for two cores (per-epoch cost several times BP's): the
evaluation epochs of protocol v1 (bench/protocol.py)."""
RESULTS_OWN_ARCH = ("ff", "spela_cnn", "fg_gaussian", "fg_rademacher")
"""Rules the results set trains on their own default architecture (FF's 3 x 1000, SPELA CNN's conv layer; random-guess
forward gradient on 128-128, where one epoch fits a CPU); every other rule of METHODS=all runs on mlp:1024-C."""
RESULTS_SHARED = (
    "bp",
    "fa",
    "dfa",
    "drtp",
    "sign_symmetry",
    "kolen_pollack",
    "brsf",
    "frsf",
    "pepita",
    "spela_o",
    "spela",
    "local_learning",
    "fg_local",
    "fg_ntk",
    "fg_fixed_ntk",
    "mono_forward",  # on mlp:1024-C its one hidden layer's projection is the output layer: BP by construction
    "cafo",  # on mlp:1024-C one random block read out by the C-way predictor
    "dtp",
    "ddtp",
    "pc",
)


def _spela_code() -> tuple[dict[str, Any], ...]:
    base = {"arch": SPELA_CODE_ARCH, "rule": SPELA_CODE_RULE}
    return (
        base,
        {**base, "rule": {**SPELA_CODE_RULE, "vectors": "random"}},
        {**base, "rule": {**SPELA_CODE_RULE, "loss": "euclidean_ref"}},
        {**base, "arch_options": {"binary": 1}},
    )


def _fewshot(epochs: tuple[int, ...], fractions: tuple[float, ...]) -> tuple[dict[str, Any], ...]:
    # val_fraction 0: the runs tune nothing, and at 0.99 the whole training part is 1% of the data (as in the paper)
    return tuple({"test_fraction": f, "epochs": e, "val_fraction": 0.0} for e in epochs for f in fractions)


def _transfer() -> tuple[dict[str, Any], ...]:
    out = []
    for size, (spela_arch, bp_arch) in _HEADS.items():
        datasets = tuple(d for d, s in TRANSFER.items() if s == size)
        for f in FRACTIONS:
            common = {"test_fraction": f, "val_fraction": 0.0, "datasets": datasets, "rule": {"lr": 0.001}}
            out.append({**common, "arch": spela_arch, "methods": ("spela_o", "spela")})
            out.append({**common, "arch": bp_arch, "methods": ("bp", "fa", "dfa", "drtp", "pepita")})
    return tuple(out)


def _fg_split() -> tuple[dict[str, Any], ...]:
    out = []
    for arch in ("resnet18", "resnet18,blocks=16,skip=0"):
        out.append({"arch": arch, "methods": tuple(m for m in FG_GRID if m not in FG_WITH_HEADS)})
        out += [{"arch": arch, "methods": FG_WITH_HEADS, "rule": {"aux": aux}} for aux in ("cnn", "mlp", "linear")]
    return tuple(out)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "every registered rule, 1 seed, 2 epochs, tuned settings of protocol v1 (chosen at v1's budget): a smoke "
        "run that finishes in minutes on a CPU",
        seeds=(0,),
        epochs=2,
    ),
    "paper": Profile(
        "paper",
        "the papers' protocol: each rule's paper epochs, 5 seeds (mean +- std)",
        seeds=(0, 1, 2, 3, 4),
        epochs=None,
    ),
    "fg_grid": Profile(
        "fg_grid",
        "forward gradient: guess x target x space (Fournier et al. Tables 2-4, 7) beside BP, 1 seed, 20 "
        "epochs; give one ARCH for all (e.g. mlp:128-128-C, resnet18)",
        seeds=(0,),
        epochs=20,
        methods=FG_GRID,
    ),
    "fewshot": Profile(
        "fewshot",
        "few-shot / data fraction (SPELA Sec. 4.2, Fig. 5): train+test merged, test fractions 0.1..0.9, "
        "0.95, 0.99, 5 and 100 epochs, 5 seeds, BP and SPELA(O) (val_fraction 0); pick with --only "
        "test_fraction=0.95,0.99 and EPOCHS=5",
        seeds=SEEDS5,
        methods=("bp", "spela_o"),
        variants=_fewshot((5, 100), FRACTIONS),
    ),
    "fewshot_extreme": Profile(
        "fewshot_extreme",
        "SPELA Table 4: test fractions 0.95 and 0.99, 5 epochs, 5 seeds, BP and SPELA(O)",
        seeds=SEEDS5,
        methods=("bp", "spela_o"),
        variants=_fewshot((5,), (0.95, 0.99)),
    ),
    "layerwise": Profile(
        "layerwise",
        "layer-wise accuracy / early exit (SPELA Fig. 3a): every exit per epoch, 5 seeds; SPELA(O) on "
        "784-1024-10 and its own arch, and the other rules with per-layer read-outs",
        seeds=SEEDS5,
        methods=("spela_o", "spela", "ff", "local_learning", "fg_local"),
        variants=({}, {"arch": "mlp:1024-C", "methods": ("spela_o",)}),
    ),
    "ablation": Profile(
        "ablation",
        "SPELA Table 6: SPELA(O) with cosine / Euclidean loss, symmetric / random class vectors, +-1 "
        "weights, and BP / BP-Bin, 5 seeds, paper epochs",
        seeds=SEEDS5,
        methods=("spela_o", "bp"),
        variants=(
            {"methods": ("spela_o",)},
            {"methods": ("spela_o",), "rule": {"loss": "euclidean"}},
            {"methods": ("spela_o",), "rule": {"vectors": "random"}},
            {"methods": ("spela_o",), "arch_options": {"binary": 1}},
            {"methods": ("bp",)},
            {"methods": ("bp",), "arch_options": {"binary": 1}},
        ),
    ),
    "spela_code": Profile(
        "spela_code",
        "SPELA(O) 784-1000-34 trained with the authors' published code recipe (log(2 - cos) loss, raw "
        "[0, 1] inputs, leaky ReLU 0.001, SGD lr 2.5 lowered by 0.1 every 10 epochs, batch 50) and Table 6's random-"
        "vector, Euclidean (their code) and +-1-weight variants under it, 5 seeds, 100 epochs",
        seeds=SEEDS5,
        epochs=100,
        methods=("spela_o",),
        run=SPELA_CODE_RUN,
        variants=_spela_code(),
    ),
    "fg_split": Profile(
        "fg_split",
        "forward-gradient grid on ResNet-18 split in 8 and 16 blocks (Fournier Tables 2-4): guess x "
        "target x space x aux head (cnn, mlp, linear) beside BP, CIFAR-10 with augmentation, 100 epochs, 1 seed",
        seeds=(0,),
        epochs=100,
        methods=FG_GRID,
        datasets=("cifar10",),
        run={"augment": True},
        variants=_fg_split(),
    ),
    "transfer": Profile(
        "transfer",
        "transfer learning (SPELA Sec. 4.3, App. B.2): frozen ResNet-50 ImageNet features, an MLP head "
        "per rule, top-1/top-5 vs test fraction, 50 epochs, lr 0.001, 5 seeds "
        "(needs the weights file, see docs/reports.md)",
        seeds=SEEDS5,
        epochs=50,
        methods=("bp", "spela_o"),
        datasets=tuple(f"resnet50:{d}" for d in TRANSFER),
        variants=_transfer(),
    ),
    "results": Profile(
        "results",
        "the published CPU results set (results/<dataset>/) at protocol v1's evaluation budget: every rule of "
        "METHODS=all, 3 seeds, on the "
        "shared mlp:1024-C where its tuned settings are (FF, SPELA CNN and random-guess forward gradient on their own "
        "archs), a CPU-sized budget: 5 epochs; 3 for FF, SPELA CNN, local learning and forward gradient with "
        "local/NTK guesses; 1 for random-guess forward gradient",
        seeds=V1.seeds,
        epochs=V1.epochs,
        method_epochs=CPU_EPOCHS,
        variants=({"arch": "mlp:1024-C", "methods": RESULTS_SHARED}, {"methods": RESULTS_OWN_ARCH}),
    ),
    "claims": Profile(
        "claims",
        "every paper claim of reports/claims/*.toml at its own settings, seeds and epochs (DATASET narrows; "
        "--only paper=spela or claim=spela/<id> picks claims); no tuned options",
        exact=True,
    ),
}


def _claims_profile(base: Profile) -> Profile:
    """PROFILE=claims from reports/claims/*.toml (read when asked for: a bad claims file breaks only this profile)."""
    import dataclasses

    from bench.claims import load_claims

    claims = load_claims()
    return dataclasses.replace(
        base,
        variants=tuple(c.variant() for c in claims),
        methods=tuple(dict.fromkeys(c.method for c in claims)),
        datasets=tuple(dict.fromkeys(c.dataset for c in claims)),
    )


def get_profile(name: str) -> Profile:
    try:
        prof = PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
    return _claims_profile(prof) if name == "claims" else prof
