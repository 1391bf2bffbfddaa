"""Paper claims as data: the claims files validate, PROFILE=claims runs exactly their settings, and the ledger matches
run records to claims by their recorded settings and judges them."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pytest

from bench.claims import (
    CLAIMS_DIR,
    load_claims,
    load_resolved,
    parse_claims,
    run_configs,
    stale_resolved,
    validate_claims,
)
from bench.errors import ConfigError
from bench.paths import PROJECT_ROOT
from reports.ledger import claims_tables, judge, ledger

ONE = """
paper = "toy"
title = "A toy paper"
source = "nowhere, 2026"

[defaults]
seeds = [0, 1, 2]

[[group]]
where = "Table 1"
dataset = "mnist"
method = "bp"
arch = "mlp:16-C"
epochs = 3
claims = [
  { id = "a", metric = "test/acc", value = 90.0, std = 0.5 },
]
"""


# --------------------------------------------------------------------------- the committed claims files
def test_committed_claims_validate_and_resolved_json_is_current():
    claims = load_claims()
    assert len(claims) >= 25
    papers = {c.paper for c in claims}
    assert {"spela", "fournier2023", "dellaferrera2022", "hinton2022"} <= papers
    assert sum(c.dataset == "fashion_mnist" for c in claims) >= 10
    assert all(c.source for c in claims)
    # every claim resolves to a run config (known dataset and rule, arch parses, options valid) and resolved.json
    # holds exactly those settings
    assert stale_resolved() == []
    assert set(load_resolved()) == {c.key for c in claims}


def test_committed_claims_cover_the_papers_tables():
    where = {(c.paper, c.where.split(" (")[0]) for c in load_claims()}
    for table in ("Table 3", "Table 4", "Table 6", "Table 7", "Table 8", "Table 9", "Table 16"):
        assert any(p == "spela" and w.startswith(table) for p, w in where), table
    for table in ("Table 2", "Table 3", "Table 4", "Table 7"):
        assert ("fournier2023", table) in where, table


@pytest.mark.parametrize(
    "edit, message",
    [
        (("value = 90.0", "value = 190.0"), "value is an accuracy in percent"),
        (("std = 0.5", "std = -1"), "std is in percent points"),
        (('metric = "test/acc"', 'metric = "train/acc"'), "metric 'train/acc'"),
        (("seeds = [0, 1, 2]", "seeds = [0, 0]"), "seeds must be"),
        (('id = "a",', 'id = "a", colour = "red",'), "unknown field(s) colour"),
        (('paper = "toy"', 'paper = "to/y"'), "needs paper"),
        (('where = "Table 1"', 'where = ""'), "missing where"),
    ],
)
def test_bad_claims_file_fails_with_the_claim_named(edit, message):
    with pytest.raises(ConfigError, match="toy.toml") as err:
        parse_claims(ONE.replace(*edit), "toy.toml")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (('method = "bp"', 'method = "nope"'), "unknown method 'nope'"),
        (('dataset = "mnist"', 'dataset = "imagenet"'), "unknown dataset"),
        (('arch = "mlp:16-C"', 'arch = "mlp:16-X"'), "bad layer width"),
        (("epochs = 3", "epochs = 3\nrule = { lr = -1 }"), "lr must be"),
        (("epochs = 3", "epochs = 3\nrule = { colour = 1 }"), "unknown option(s) colour"),
    ],
)
def test_claim_that_cannot_run_fails_validation(edit, message):
    claims = parse_claims(ONE.replace(*edit), "toy.toml")
    with pytest.raises(ConfigError, match="toy/a") as err:
        validate_claims(claims)
    assert message in str(err.value)


def test_duplicate_claim_ids_are_refused(tmp_path):
    (tmp_path / "toy.toml").write_text(
        ONE.replace("claims = [\n", 'claims = [\n  { id = "a", metric = "test/acc", value = 1.0 },\n')
    )
    with pytest.raises(ConfigError, match="'toy/a' is defined twice"):
        load_claims(tmp_path)


def test_group_and_defaults_merge_rule_options():
    text = ONE.replace("seeds = [0, 1, 2]", 'seeds = [0, 1, 2]\nrule = { lr = 0.5, optimizer = "sgd" }')
    text = text.replace("epochs = 3", "epochs = 3\nrule = { lr = 0.1 }")
    text = text.replace("value = 90.0,", "value = 90.0, rule = { momentum = 0.0 },")
    (c,) = parse_claims(text, "toy.toml")
    assert c.rule == {"lr": 0.1, "optimizer": "sgd", "momentum": 0.0}
    assert c.seeds == (0, 1, 2) and c.key == "toy/a"
    assert c.command() == "make bench PROFILE=claims DATASET=mnist METHODS=bp ARGS='--only claim=toy/a'"


# --------------------------------------------------------------------------- PROFILE=claims
def test_claims_profile_expands_to_every_claims_runs():
    from bench.grid import GridSpec, expand

    def ident(cfg):
        return json.dumps(
            {
                "d": cfg.dataset,
                "m": cfg.method,
                "a": cfg.arch,
                "s": cfg.seed,
                "e": cfg.epochs,
                "r": cfg.rule,
                **{k: getattr(cfg, k) for k in ("test_fraction", "val_fraction", "batch_size", "norm", "augment")},
            },
            sort_keys=True,
        )

    got = {ident(c) for c in expand(GridSpec(profile="claims"))}
    want = {ident(c) for claim in load_claims() for c in run_configs(claim)}
    assert want <= got and len(got) == len(want)
    # narrowing: one paper, one dataset, given seeds
    spela_fm = expand(GridSpec(profile="claims", datasets=("fashion_mnist",), seeds=(0,), only={"paper": ("spela",)}))
    assert spela_fm and {c.dataset for c in spela_fm} == {"fashion_mnist"} and {c.seed for c in spela_fm} == {0}
    keys = {c.key for c in load_claims() if c.paper == "spela" and c.dataset == "fashion_mnist"}
    assert len({ident(c) for c in spela_fm}) == len(
        {ident(r) for k in keys for r in run_configs(next(c for c in load_claims() if c.key == k), (0,))}
    )


def test_claims_profile_dry_run_lists_each_fashion_mnist_claims_runs():
    from bench.grid import GridSpec, run_grid
    from bench.run import resolve

    out = io.StringIO()
    assert (
        run_grid(
            GridSpec(profile="claims", datasets=("fashion_mnist",), methods=("spela_o", "bp")), dry_run=True, out=out
        )
        == 0
    )
    text = out.getvalue()
    claims = [c for c in load_claims() if c.dataset == "fashion_mnist" and c.method in ("spela_o", "bp")]
    assert claims
    for claim in claims:
        for cfg in run_configs(claim):
            assert resolve(cfg).name in text, claim.key


def test_claims_profile_refuses_settings_that_would_match_no_claim():
    from bench.grid import GridSpec, expand

    for spec in (
        GridSpec(profile="claims", epochs=2),
        GridSpec(profile="claims", arch="mlp:8-C"),
        GridSpec(profile="claims", overrides={"lr": "0.1"}),
    ):
        with pytest.raises(ConfigError, match="runs each variant's own settings"):
            expand(spec)


def test_claims_profile_uses_no_tuned_options():
    from bench.grid import GridSpec, expand

    cfgs = expand(GridSpec(profile="claims", datasets=("fashion_mnist",), methods=("bp",), seeds=(0,)))
    assert cfgs and all(not any(s.startswith("tuned") for s in c.rule_sources.values()) for c in cfgs)


# --------------------------------------------------------------------------- the ledger on hand-made records
SETTING = {
    "dataset": "mnist",
    "method": "bp",
    "arch": "mlp:16-C,act=relu",
    "epochs": 3,
    "val_fraction": 0.1,
    "test_fraction": None,
    "rule": {"lr": 0.001, "milestones": [0.6, 0.9]},
}


def record(seed, acc, status="completed", name=None, **change):
    config = {**SETTING, **change, "seed": seed}
    return {
        "name": name or f"run{seed}",
        "status": status,
        "config": config,
        "seed": seed,
        "test": {"test/acc": acc, "test/acc/layer1": acc - 0.05} if acc is not None else {},
    }


def entry_for(records, text=ONE):
    (claim,) = parse_claims(text, "toy.toml")
    (e,) = ledger([claim], {claim.key: SETTING}, records, source="here")
    return e


def test_ledger_reproduced_when_within_the_larger_std():
    e = entry_for([record(0, 0.896), record(1, 0.900), record(2, 0.904)])
    assert e.verdict == "reproduced" and e.n == 3 and math.isclose(e.mean, 90.0) and math.isclose(e.std, 0.4)
    # paper std 0.5 > ours: a mean 0.5 away is still reproduced, 0.6 away is not
    assert entry_for([record(0, 0.895), record(1, 0.895)]).verdict == "reproduced"
    assert entry_for([record(0, 0.894), record(1, 0.894)]).verdict == "below"


def test_ledger_below_and_above():
    below = entry_for([record(0, 0.85), record(1, 0.86)])
    assert below.verdict == "below" and math.isclose(below.diff, -4.5)
    above = entry_for([record(0, 0.95)])
    assert above.verdict == "above" and above.n == 1 and math.isnan(above.std)
    # our own spread counts too: wide seeds make a distant mean reproduced
    assert entry_for([record(0, 0.80), record(1, 0.99)]).verdict == "reproduced"


def test_ledger_matches_by_settings_not_by_name():
    claim_named = "toy__bp__a"  # a name that looks right but settings that differ: no match
    e = entry_for(
        [
            record(0, 0.90, name=claim_named, epochs=4),
            record(1, 0.90, rule={"lr": 0.01}),
            record(2, 0.90, val_fraction=0.0),
        ]
    )
    assert e.verdict == "not run" and "no run with these settings in here" in e.why
    # an unrelated name with the claim's settings matches; numbers compare as numbers (3 == 3.0, tuple == list)
    e = entry_for([record(0, 0.90, name="something-else", epochs=3.0, rule={"lr": 1e-3, "milestones": (0.6, 0.9)})])
    assert e.verdict == "reproduced" and e.runs == ["something-else"]


def test_ledger_not_run_says_why():
    assert "no run with these settings" in entry_for([]).why
    e = entry_for(
        [record(0, None, status="diverged"), record(1, None, status="diverged"), record(2, None, status="crashed")]
    )
    assert e.verdict == "not run" and e.why == "runs with these settings: 1 crashed, 2 diverged"
    e = entry_for([record(0, 0.9)], ONE.replace('metric = "test/acc"', 'metric = "test/acc5"'))
    assert e.verdict == "not run" and "recorded no test/acc5" in e.why
    (claim,) = parse_claims(ONE, "toy.toml")
    (e,) = ledger([claim], {}, [record(0, 0.9)])
    assert e.verdict == "not run" and "not resolved" in e.why


def test_ledger_reads_the_claims_metric_and_one_run_per_seed():
    text = ONE.replace('metric = "test/acc"', 'metric = "test/acc/layer1"').replace("value = 90.0", "value = 85.0")
    e = entry_for([record(0, 0.90), record(0, 0.90, status="crashed"), record(1, 0.90)], text)
    assert e.verdict == "reproduced" and e.n == 2 and math.isclose(e.mean, 85.0)


def test_judge_without_any_std_needs_equality():
    (claim,) = parse_claims(ONE.replace(", std = 0.5", ""), "toy.toml")
    assert judge(claim, [90.0]) == "reproduced" and judge(claim, [89.9]) == "below" and judge(claim, []) == "not run"


def test_claims_table_lists_every_claim_with_its_command():
    text = ONE.replace("claims = [\n", 'claims = [\n  { id = "b", metric = "test/acc", value = 50.0 },\n')
    claims = parse_claims(text, "toy.toml")
    entries = ledger(claims, {c.key: SETTING for c in claims}, [record(0, 0.5), record(1, 0.52)], source="here")
    tex, md = claims_tables(entries)
    assert "2 claims: 0 reproduced, 0 below, 1 above, 1 not run" not in md  # b: 51.0 ± 1.41 vs 50.0 -> reproduced
    assert "2 claims: 1 reproduced, 1 below, 0 above, 0 not run" in md
    assert (
        "| toy/b: Table 1: bp mlp:16-C, mnist, 3 ep., standard split | 50.00 | 51.00 ± 1.41 (n=2) | +1.00 | "
        "reproduced | `make bench PROFILE=claims DATASET=mnist METHODS=bp ARGS='--only claim=toy/b'` |" in md
    )
    assert r"\begin{longtable}" in tex and "toy/a" in tex and tex.count(r"\\") >= 4


def test_report_writes_the_claims_ledger(tmp_path):
    from reports.build import build_report

    (claim,) = parse_claims(ONE, "toy.toml")
    claims_dir = tmp_path / "claims"
    claims_dir.mkdir()
    (claims_dir / "toy.toml").write_text(ONE)
    (claims_dir / "resolved.json").write_text(json.dumps({claim.key: SETTING}))
    runs = tmp_path / "runs"
    (runs / "records").mkdir(parents=True)
    for seed, acc in ((0, 0.85), (1, 0.86)):
        rec = {
            **record(seed, acc),
            "dataset": "mnist",
            "method": "bp",
            "arch": "mlp:16-C",
            "epochs": 3,
            "arch_full": SETTING["arch"],
            "history": [],
            "started": "2026-12-01T22:00:03+0000",
        }
        (runs / "records" / f"r{seed}.json").write_text(json.dumps(rec))
    out = build_report(source=str(runs), out=tmp_path / "out", figures=False, claims_dir=claims_dir)
    md = (out / "tables" / "claims.md").read_text()
    assert "| toy/a: " in md and "| below |" in md and "85.50 ± 0.71 (n=2)" in md
    assert (out / "tables" / "claims.tex").exists()
    assert "## Paper claims" in (out / "index.md").read_text()


def test_ledger_and_claims_loader_import_no_training_code():
    code = (
        "import sys, bench.claims, reports.ledger; bench.claims.load_claims(); "
        "assert not {'torch', 'lightning', 'methods.base', 'methods.registry'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


def test_claims_dir_is_in_the_project():
    assert CLAIMS_DIR == PROJECT_ROOT / "reports" / "claims" and CLAIMS_DIR.is_dir()


def test_claims_command_lists_checks_and_fails_with_one_line(tmp_path, capsys):
    from bench.claims import main

    (tmp_path / "toy.toml").write_text(ONE)
    assert main(["--dir", str(tmp_path)]) == 0
    assert "toy/a" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path), "--check"]) == 2  # no resolved.json yet
    assert "out of date for toy/a" in capsys.readouterr().err
    assert main(["--dir", str(tmp_path), "--write"]) == 0 and main(["--dir", str(tmp_path), "--check"]) == 0
    assert set(json.loads((tmp_path / "resolved.json").read_text())) == {"toy/a"}
    (tmp_path / "toy.toml").write_text(ONE.replace("value = 90.0", "value = 900.0"))
    assert main(["--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: toy.toml: claim 'a': value is an accuracy") and err.count("\n") == 1
