"""Every rule's default settings learn, on each built-in dataset kind, within a couple of hundred steps.

The data are generated in the native formats torchvision reads (IDX for the grey 28x28 datasets, CIFAR pickles for the
colour 32x32 ones): each class is a fixed random pattern plus noise, so any rule that learns beats chance by far. Each
run uses the rule's defaults (options and architecture), nothing tuned: a default that barely moves (e.g. a reference
repository's lr meant for 100 epochs) fails here.
"""

from __future__ import annotations

import pytest

import methods  # noqa: F401 - registers the rules
from bench.run import RunConfig, run
from methods.registry import get_rule, list_rules
from tests.native_files import make_cifar_dataset, make_idx_dataset

RULES = [m for m in list_rules() if get_rule(m).in_all]
"""Every rule ``METHODS=all`` runs (the forward-gradient grid cells beyond its presets are variants of them)."""
KINDS = {"grey28": "mnist", "colour32": "cifar10"}
EPOCHS, N_TRAIN = 10, 1100  # 990 training samples after the validation split: 16 steps of 64 per epoch, 160 steps
FLOOR = 0.6  # test accuracy; chance is 0.1


@pytest.fixture(scope="module")
def native_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("native")
    make_idx_dataset(root, "MNIST", n_train=N_TRAIN, n_test=300)
    make_cifar_dataset(root, 10, n_train=N_TRAIN, n_test=300)
    return root


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("method", RULES)
def test_defaults_learn(method, kind, native_root, tmp_path):
    cfg = RunConfig(dataset=KINDS[kind], method=method, epochs=EPOCHS, data_dir=str(native_root), verify_data=False,
                    wandb="disabled", runs_dir=str(tmp_path), progress=False)
    result = run(cfg)
    assert result.status == "completed", result.record.get("error")
    assert result.test_acc > FLOOR, f"{method} defaults on {kind}: test accuracy {result.test_acc:.3f} after " \
                                    f"{EPOCHS} epochs of {N_TRAIN} samples"
