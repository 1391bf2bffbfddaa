"""The papers' protocols as `make bench` profiles, end to end on small generated data, and the report built from them:
the few-shot split, every profile's grid, transfer features (random backbone), the tables (compiled with pdflatex when
it is installed) and the figures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
import torch

from bench.grid import GridSpec, expand, run_grid
from bench.profiles import FRACTIONS, PROFILES
from tests.native_files import make_cifar_dataset, make_idx_dataset


# --------------------------------------------------------------------------- the few-shot split
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root, "MNIST", n_train=300, n_test=100)
    make_cifar_dataset(root, 10, n_train=60, n_test=20)
    return root


def _keys(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


@pytest.mark.parametrize("tf,val", [(0.1, 0.1), (0.5, 0.0), (0.95, 0.0), (0.99, 0.1)])
def test_fewshot_split_has_the_requested_sizes_and_no_overlap(data_root, tf, val):
    from bench.data import TensorDataModule

    def splits(seed):
        dm = TensorDataModule(
            "mnist", root=data_root, verify=False, test_fraction=tf, val_fraction=val, seed=seed, norm="unit"
        )
        dm.setup()
        return dm.splits

    s = splits(0)
    n = 400  # 300 train + 100 test, merged
    n_test = round(tf * n)
    n_val = round(val * (n - n_test))
    assert len(s["test"][0]) == n_test and len(s["val"][0]) == n_val and len(s["train"][0]) == n - n_test - n_val
    tr, va, te = (_keys(s[k][0]) for k in ("train", "val", "test"))
    assert len(tr) + len(va) + len(te) == n  # every sample once (the generated images are all distinct)
    assert not (tr & te) and not (tr & va) and not (va & te)
    assert _keys(splits(0)["test"][0]) == te and _keys(splits(1)["test"][0]) != te  # the seed draws the split


def test_profiles_hold_the_papers_protocols():
    fs = PROFILES["fewshot"]
    assert (
        {v["test_fraction"] for v in fs.variants}
        == set(FRACTIONS)
        == {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99}
    )
    assert {v["epochs"] for v in fs.variants} == {5, 100} and fs.seeds == (0, 1, 2, 3, 4)
    cfgs = expand(GridSpec(profile="fewshot", tuned=False))
    assert len(cfgs) == 2 * 22 * 5 and {c.method for c in cfgs} == {"bp", "spela_o"}
    assert all(c.val_fraction == 0.0 for c in cfgs)
    # the bar's command: EPOCHS=5 and --only test_fraction=0.95,0.99 (5 seeds, BP and SPELA(O))
    cfgs = expand(GridSpec(profile="fewshot", epochs=5, only={"test_fraction": ("0.95", "0.99")}, tuned=False))
    assert len({(c.method, c.seed, c.test_fraction) for c in cfgs}) == 20  # the 100-epoch variants coincide (run once)
    assert {(c.test_fraction, c.epochs) for c in cfgs} == {(0.95, 5), (0.99, 5)}
    abl = expand(GridSpec(profile="ablation", seeds=(0,), tuned=False))
    got = {(c.method, c.rule.get("loss"), c.rule.get("vectors"), "binary=1" in (c.arch or "")) for c in abl}
    assert got == {
        ("spela_o", None, None, False),
        ("spela_o", "euclidean", None, False),
        ("spela_o", None, "random", False),
        ("spela_o", None, None, True),
        ("bp", None, None, False),
        ("bp", None, None, True),
    }
    code = expand(GridSpec(profile="spela_code", seeds=(0,), tuned=False))
    assert all(c.batch_size == 50 and c.norm == "unit" and c.epochs == 100 and c.rule["lr"] == 2.5 for c in code)
    assert {(c.rule["loss"], c.rule.get("vectors"), "binary=1" in c.arch) for c in code} == {
        ("log_cosine", None, False),
        ("log_cosine", "random", False),
        ("euclidean_ref", None, False),
        ("log_cosine", None, True),
    }
    tr = expand(GridSpec(profile="transfer", seeds=(0,), tuned=False))
    assert {c.dataset for c in tr} == {
        f"resnet50:{d}" for d in ("aircraft", "flowers102", "food101", "pets", "cifar10")
    }
    assert {c.arch for c in tr if c.dataset == "resnet50:flowers102"} == {"mlp:1024-1024", "mlp:1024-1024-C"}
    assert all(c.epochs == 50 and c.rule["lr"] == 0.001 for c in tr)
    fg = expand(GridSpec(profile="fg_split", tuned=False))
    assert {c.arch for c in fg} == {"resnet18", "resnet18,blocks=16,skip=0"}
    assert {c.rule.get("aux") for c in fg if c.method == "fg_local"} == {"cnn", "mlp", "linear"}
    with pytest.raises(Exception, match="no variant"):
        expand(GridSpec(profile="fewshot", only={"test_fraction": ("0.42",)}))


# --------------------------------------------------------------------------- every protocol, end to end
SMALL = {
    "limit_train": 48,
    "limit_eval": 40,
    "batch_size": 16,
    "wandb": "disabled",
    "progress": False,
    "verify_data": False,
}
RUNS = [  # (profile, GridSpec overrides): each protocol on a small subset
    ("fewshot", {"datasets": ("mnist",), "epochs": 1, "only": {"test_fraction": ("0.99",)}}),
    ("layerwise", {"datasets": ("mnist",), "epochs": 2, "methods": ("spela_o", "spela")}),
    ("ablation", {"datasets": ("mnist",), "epochs": 1}),
    ("paper", {"datasets": ("mnist",), "epochs": 2, "methods": ("bp", "fa"), "overrides": {"align_every": 1}}),
    ("fg_split", {"datasets": ("cifar10",), "epochs": 1, "arch": "cnn:4", "methods": ("bp", "fg_local")}),
    ("transfer", {"datasets": ("resnet50_random:cifar10",), "epochs": 1, "only": {"test_fraction": ("0.5",)}}),
]


@pytest.fixture(scope="module")
def protocol_runs(data_root, tmp_path_factory):
    import os

    runs = tmp_path_factory.mktemp("protocol_runs")
    old = os.environ.get("BENCH_FEATURE_SIZE")
    os.environ["BENCH_FEATURE_SIZE"] = "32"  # a random ResNet-50 on 32x32 inputs: the pipeline, quickly
    try:
        for profile, over in RUNS:
            spec = GridSpec(
                profile=profile,
                seeds=(0,),
                tuned=False,
                **over,
                run={**SMALL, "data_dir": str(data_root), "runs_dir": str(runs)},
            )
            assert run_grid(spec) == 0, profile
    finally:
        if old is None:
            os.environ.pop("BENCH_FEATURE_SIZE")
        else:
            os.environ["BENCH_FEATURE_SIZE"] = old
    from bench.efficiency import measure, save

    for method in ("bp", "spela_o"):  # for the efficiency table and accuracy vs memory
        save(measure(method, "mlp:1024-C" if method == "bp" else None, 8, "mnist", min_time=0.0), str(runs))
    return runs


def test_every_protocol_runs_end_to_end(protocol_runs):
    from reports.collect import collect_runs

    df = collect_runs(protocol_runs)
    assert (df["status"] == "completed").all(), df[["name", "status"]]
    assert set(df["group"]) == {p for p, _ in RUNS}
    fs = df[df["group"] == "fewshot"]
    assert set(fs["test_fraction"]) == {0.99} and set(fs["method"]) == {"bp", "spela_o"}
    lw = df[df["group"] == "layerwise"]
    assert lw["test_acc_layer1"].notna().sum() >= 3  # SPELA(O) x 2 archs, SPELA: per-layer exits
    tr = df[df["group"] == "transfer"]
    assert set(tr["arch"]) == {"mlp:512-64", "mlp:512-64-C"} and tr["test_acc5"].notna().all()
    assert len(df[df["group"] == "fg_split"]) == 4  # bp, fg_local x aux cnn/mlp/linear


def test_transfer_needs_the_weights_and_says_where_to_put_them(data_root, tmp_path, monkeypatch):
    from bench.errors import DataError
    from bench.run import RunConfig, run

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        DataError, match=r"resnet50-\w+\.pth.*" + re.escape(str(tmp_path / "torch" / "hub" / "checkpoints"))
    ):
        run(
            RunConfig(
                dataset="resnet50:cifar10",
                method="bp",
                arch="mlp:8-C",
                epochs=1,
                data_dir=str(data_root),
                runs_dir=str(tmp_path),
                **{k: v for k, v in SMALL.items() if k not in ("limit_train", "limit_eval")},
            )
        )


# --------------------------------------------------------------------------- the report
@pytest.fixture(scope="module")
def report(protocol_runs, tmp_path_factory):
    from reports.build import build_report

    out = tmp_path_factory.mktemp("report")
    build_report(source=str(protocol_runs), out=out)
    return out


def test_report_has_every_protocols_table_and_figure(report):
    tables = {p.stem for p in (report / "tables").glob("*.tex")}
    assert any(t.startswith("comparison_e") for t in tables)  # one standard-split table per epoch budget
    for name in (
        "fewshot_1ep",
        "layerwise",
        "ablation",
        "transfer_resnet50_random_cifar10",
        "efficiency_mnist_mlp-1024-C_cpu",
    ):
        assert name in tables, sorted(tables)
    assert any(t.startswith("fg_grid_cifar10") for t in tables)
    figs = {p.stem for p in (report / "figures").glob("*.png")}
    assert any(f.startswith("learning_mnist_e") for f in figs)  # one learning-curve figure per epoch budget
    for name in (
        "fewshot_mnist",
        "layerwise_mnist",
        "alignment_mnist",
        "transfer",
        "acc_vs_memory_mnist",
    ):
        assert name in figs, sorted(figs)
    for f in (report / "figures").iterdir():
        assert f.stat().st_size > 2000, f  # written, not empty
    index = (report / "index.md").read_text()
    for name in figs:
        assert f"figures/{name}.png" in index
    abl = (report / "tables" / "ablation.md").read_text()
    for row in ("SPELA(O)", "SPELA(O)-Euc", "SPELA(O)-Rand", "SPELA(O)-Bin", "BP", "BP-Bin"):
        # [the run's options], † untuned (no tuned settings in the tests' empty tuned folder)
        assert re.search(rf"^\| {re.escape(row)}( \[[^]]*\])? † \|", abl, re.M), (row, abl)
    assert "cifar10" not in abl  # BP runs of other protocols are no ablation rows
    df = pd.read_csv(report / "runs.csv")
    fs = df[df["test_fraction"] == 0.99]
    cell = f"{100 * fs[fs['method'] == 'spela_o']['test_acc'].mean():.2f}"
    assert cell in (report / "tables" / "fewshot_1ep.md").read_text()  # the table holds the runs' numbers


def test_every_generated_tex_compiles(report, tmp_path):
    """report.tex inputs every table and includes every figure: one pdflatex run checks them all."""
    tex = (report / "report.tex").read_text()
    inputs = set(re.findall(r"\\input\{([^}]+)\}", tex))
    written = {p.relative_to(report).as_posix() for p in report.rglob("*.tex") if p.name != "report.tex"}
    assert inputs == written
    if shutil.which("pdflatex") is None:
        assert not os.environ.get("BENCH_REQUIRE_LATEX"), "pdflatex is missing but BENCH_REQUIRE_LATEX is set (CI)"
        pytest.skip(
            "pdflatex not installed (CI installs texlive-latex-base and texlive-latex-recommended); "
            "apt-get install texlive-latex-base texlive-latex-recommended to run this check"
        )
    work = tmp_path / "tex"
    shutil.copytree(report, work)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (work / "report.pdf").stat().st_size > 10_000
