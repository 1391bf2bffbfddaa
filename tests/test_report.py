"""`make report` rebuilds runs.csv and the tables from real offline W&B runs made here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from bench.paths import PROJECT_ROOT
from bench.run import RunConfig, run
from bench.wandb_io import iter_offline_runs
from tests.native_files import make_idx_dataset


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_idx_dataset(data, "MNIST", n_train=300, n_test=100)
    runs = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        run(
            RunConfig(
                dataset="mnist",
                method="bp",
                arch="mlp:16-C",
                epochs=2,
                seed=seed,
                batch_size=50,
                data_dir=str(data),
                verify_data=False,
                runs_dir=str(runs),
                wandb="offline",
                progress=False,
            )
        )
    run(
        RunConfig(
            dataset="mnist",
            method="bp",
            arch="mlp:16-C",
            epochs=1,
            seed=0,
            batch_size=50,
            data_dir=str(data),
            verify_data=False,
            runs_dir=str(runs),
            wandb="offline",
            progress=False,
            rule={"optimizer": "sgd", "lr": 1e12, "momentum": 0},
        )
    )
    run(
        RunConfig(
            dataset="mnist",
            method="bp",
            arch="mlp:8-C",
            epochs=1,
            seed=0,
            batch_size=50,
            data_dir=str(data),
            verify_data=False,
            runs_dir=str(runs),
            wandb="offline",
            progress=False,
            group="to-be-killed",
        )
    )
    return runs


def test_offline_records_read_back(offline_runs):
    runs = list(iter_offline_runs(offline_runs))
    assert len(runs) == 4, runs
    assert all(r.finished and not r.damaged for r in runs), [(r.name, r.finished, r.damaged) for r in runs]
    done = [r for r in runs if r.summary["status"] == "completed" and r.config["arch"].startswith("mlp:16-C")]
    assert len(done) == 2 and all(len([h for h in r.history if "val/acc" in h]) == 2 for r in done)
    assert {r.config["seed"] for r in done} == {0, 1} and all(0 < r.summary["test/acc"] <= 1 for r in done)


def test_make_report_builds_tables(offline_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(offline_runs, runs, symlinks=True)  # keep W&B's latest-run link a link
    # a run killed mid-write: its record file ends in the middle of a chunk
    victim = next(f for f in (runs / "wandb").glob("*/run-*.wandb") if "mlp-8-C" in f.name)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    phantom = runs / "wandb" / "offline-run-20260101_000000-phantom" / "run-phantom.wandb"
    phantom.parent.mkdir(parents=True)
    phantom.write_bytes(b":W&B\xe1\xbe\x00")  # only the file header: SIGKILL before W&B wrote anything
    out = tmp_path / "out"
    proc = subprocess.run(
        ["make", "-s", "report", f"SOURCE={runs}", f"ARGS=--out {out}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    df = pd.read_csv(out / "runs.csv")
    for col in (
        "dataset",
        "method",
        "arch",
        "seed",
        "epochs",
        "status",
        "test_acc",
        "train_time_s",
        "peak_mem_bytes",
        "run_id",
    ):
        assert col in df.columns
    # the record wins over a damaged W&B file; a W&B file without a configuration (killed at start) is no run
    assert sorted(df["status"]) == ["completed", "completed", "completed", "diverged"]
    tex = (out / "mnist.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    accs = df[(df["status"] == "completed") & (df["arch"] == "mlp:16-C")]["test_acc"] * 100
    cell = f"{accs.mean():.2f} \\pm {accs.std():.2f}"
    # mean ± std over the 2 seeds in bold (best), its 95% interval, n
    assert re.search(re.escape(f"$\\mathbf{{{cell}}}$") + r" & \[[^\]]*\] & 2 ", tex), tex
    md = (out / "mnist.md").read_text()
    assert f"**{accs.mean():.2f} ± {accs.std():.2f}**" in md
    index = (out / "index.md").read_text()
    assert "diverged" in index and "4 runs read" in index


def learn_rules(*pairs: tuple[str, str]) -> None:
    """Tell the labels what the records of these (rule, arch) runs would say about their rules."""
    import methods  # noqa: F401
    from bench.run import label_facts
    from methods.registry import get_rule
    from reports.labels import learn

    for method, arch in pairs:
        learn(method, arch, label_facts(get_rule(method), arch))


def test_labels_name_the_unit_options_a_run_changed_and_nothing_else():
    from reports.labels import run_label

    learn_rules(("spela_o", "mlp:1000-34"), ("drtp", "mlp:1024-C"), ("bp", "resnet18"), ("bp", "mlp:1024-C"))

    assert run_label("spela_o", {}, "mlp:1000-34,act=relu,out_act=relu,bias=1,init=he_normal") == "SPELA(O)"
    assert (
        run_label("spela_o", {"lr": 0.01}, "mlp:1000-34,act=leaky_relu,out_act=tanh,bias=1,init=he_normal")
        == "SPELA(O) [lr=0.01, act=leaky_relu, out_act=tanh]"
    )
    # DRTP's own units are tanh + sigmoid: the comparison tables' ReLU + softmax setting is named
    assert (
        run_label("drtp", {}, "mlp:1024-C,act=relu,out_act=none,bias=1,init=default") == "DRTP [act=relu, out_act=none]"
    )
    # structure (blocks, skips, ±1 weights) is the architecture column's, not the label's
    assert run_label("bp", {}, "resnet18,act=relu,out_act=none,bias=1,init=default,blocks=16,skip=0") == "BP"
    binary = "mlp:1024-C,act=relu,out_act=none,bias=1,init=default,binary=1"
    assert run_label("bp", {}, binary, ablation=True) == "BP-Bin"


def test_labels_name_the_authors_code_recipe_instead_of_its_options():
    from bench.profiles import SPELA_CODE_RULE, SPELA_CODE_RUN
    from reports.labels import run_label

    arch = "mlp:1000-34,act=leaky_relu_1e-3,out_act=leaky_relu_1e-3,bias=1,init=he_uniform"
    learn_rules(("spela_o", arch))
    assert run_label("spela_o", SPELA_CODE_RULE, arch, run_options=SPELA_CODE_RUN) == (
        "SPELA(O) [authors' code, loss=log_cosine]"
    )
    rand = {**SPELA_CODE_RULE, "vectors": "random"}
    assert run_label("spela_o", rand, arch, ablation=True, run_options=SPELA_CODE_RUN) == (
        "SPELA(O)-Rand [authors' code, loss=log_cosine]"
    )
    euc = {**SPELA_CODE_RULE, "loss": "euclidean_ref"}
    assert (
        run_label("spela_o", json.dumps(euc), arch + ",binary=1", ablation=True, run_options=json.dumps(SPELA_CODE_RUN))
        == "SPELA(O)-Euc(code)-Bin [authors' code]"
    )
    # one option off the recipe: every option is named again
    assert run_label("spela_o", {**SPELA_CODE_RULE, "lr": 1.0}, arch, run_options=SPELA_CODE_RUN).startswith(
        "SPELA(O) [gamma=0.04, input_norm=False, loss=log_cosine, lr=1,"
    )
