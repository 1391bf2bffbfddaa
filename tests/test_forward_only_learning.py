"""Forward-only rules learn on a real Fashion-MNIST subset (2000 samples, 2 epochs, batch 32), every early exit
included."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "name,arch,overrides,floor",
    [
        ("spela_o", "mlp:256-34", {}, 0.6),
        ("spela", "mlp:256-34", {}, 0.55),  # one epoch per layer
        ("ff", "mlp:300", {"min_layer": 1}, 0.35),  # FF's deeper layers need many epochs; layer 1 learns at once
        ("spela_cnn", "cnn:32", {"lr": 0.01}, 0.5),
    ],
)
def test_forward_only_rule_learns_on_fashion_mnist(name, arch, overrides, floor, fmnist_root, tmp_path):
    from bench.run import RunConfig, run

    res = run(
        RunConfig(
            method=name,
            arch=arch,
            epochs=2,
            batch_size=32,
            limit_train=2000,
            limit_eval=500,
            data_dir=str(fmnist_root),
            runs_dir=str(tmp_path),
            wandb="disabled",
            progress=False,
            rule=overrides,
        )
    )
    assert res.status == "completed"
    exits = {k: v for k, v in res.record["test"].items() if k.startswith("test/acc/layer")}
    assert exits, "every layer that can classify reports its accuracy"
    assert res.test_acc > floor, res.record["test"]
    assert all(f"val/acc/{k.split('/')[-1]}" in res.record["history"][-1] for k in exits)  # per epoch too
    if name.startswith("spela") and name != "spela_cnn":
        assert exits["test/acc/layer1"] > floor - 0.05, exits
