"""Optuna sweeps: search spaces, shared studies (SQLite, journal, PostgreSQL), pruning, divergence, crashed
workers, and the tuned parameters' round trip into ``make bench``."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import signal
import time
import uuid
from contextlib import redirect_stdout
from pathlib import Path

import pytest

import methods  # noqa: F401 - registers the rules
from bench.errors import ConfigError
from methods.registry import list_rules
from sweeps.space import load_space
from sweeps.study import PRUNE_REASON, StudySpec

ARCH = "mlp:16-C,act=relu,out_act=none,bias=1,init=default"
PG_HELP = (
    "no PostgreSQL server reachable at {url}. Start one (Debian/Ubuntu, as root): apt-get install -y "
    'postgresql && pg_ctlcluster 15 main start && su postgres -c "psql -c \\"CREATE ROLE bench LOGIN '
    "PASSWORD 'bench'\\\"\" && su postgres -c 'createdb -O bench bench_test'  (or run .ci/run), or point "
    "BENCH_TEST_POSTGRES_URL at a server"
)


def _spec(epochs: int = 1, fixed: dict | None = None, space: dict | None = None, startup: int = 3) -> StudySpec:
    sp = load_space("bp")
    return StudySpec(
        dataset="fashion_mnist",
        method="bp",
        arch=ARCH,
        epochs=epochs,
        run={"limit_train": 320, "limit_eval": 300, "batch_size": 32},
        fixed=fixed or {},
        space=space or sp.to_dict(),
        space_source=sp.source,
        pruner={"name": "median", "startup": startup, "warmup": 0},
    )


def _options(root: Path, **kw) -> dict:
    return {
        "heartbeat": None,
        "threads": 1,
        "startup": 2,
        "sampler_seed": 0,
        "env": {"data_dir": str(root), "wandb": "disabled"},
        **kw,
    }


def _fork(target, *args) -> mp.Process:
    p = mp.get_context("fork").Process(target=target, args=args)
    p.start()
    return p


def _create(spec, url, budget, name=None, heartbeat=None):
    """Create the study in a child process: the parent then holds no database connection across the forks."""
    from sweeps.launch import create_study

    create_study(spec, url, budget, name, heartbeat)


def _load(url, name):
    import optuna

    from sweeps.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=None))


def _check_each_trial_once(study, budget: int, n_workers: int, concurrent: bool = True) -> None:
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(budget))  # every trial exactly once
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials), [t.state.name for t in trials]
    assert len({t.user_attrs["run"] for t in trials}) == budget
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == n_workers
    if not concurrent:
        return
    # the workers really ran at the same time: some trials of different workers overlap in time
    spans = [(t.datetime_start, t.datetime_complete, t.user_attrs["worker"]) for t in trials]
    assert any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a in spans for b in spans)


@pytest.fixture()
def tuned_dir(tmp_path, monkeypatch):
    d = tmp_path / "tuned"
    monkeypatch.setenv("BENCH_TUNED_DIR", str(d))
    monkeypatch.setenv("BENCH_REPORTS_DIR", str(tmp_path / "reports"))
    return d


# ------------------------------------------------------------------ search spaces
@pytest.mark.parametrize("name", list_rules())
def test_every_registered_rule_has_a_valid_space(name):
    space = load_space(name)
    lr = next(p for p in space.params if p.name == "lr")
    assert lr.kind == "float" and lr.log and 0 < lr.low < lr.high


def test_rule_without_file_gets_lr_around_its_default(monkeypatch, tmp_path):
    import sweeps.space as sp

    monkeypatch.setattr(sp, "SPACES_DIR", tmp_path)
    space = load_space("bp")
    (lr,) = space.params
    assert (lr.low, lr.high) == (3.33e-5, 3e-2) and lr.log and space.source.startswith("default")  # 1e-3 x/ 30


@pytest.mark.parametrize(
    "text,match",
    [
        (
            'lr = { type = "float", low = 1e-4, high = 1e-1, log = true }\n'
            'warp = { type = "float", low = 1, high = 2 }',
            "warp is not an option of rule 'bp'",
        ),
        ('momentum = { type = "float", low = 0.1, high = 0.9 }', "searches lr log-uniformly"),
        ('lr = { type = "float", low = 0, high = 1e-1, log = true }', "log-scaled range needs low > 0"),
        (
            'lr = { type = "float", low = 1e-3, high = 1e-1, log = true }\noptimizer = { choices = ["adam", "lbfgs"] }',
            "optimizer='lbfgs' is not valid",
        ),
        (
            'lr = { type = "float", low = 1e-3, high = 1e-1, log = true }\n'
            'momentum = { type = "float", low = 0.5, high = 1.5 }',
            "momentum=1.5 is not a valid value",
        ),
    ],
)
def test_bad_space_files_fail_clearly(tmp_path, text, match):
    f = tmp_path / "bp.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_space("bp", f)


# ------------------------------------------------------------------ shared studies
def test_two_local_workers_share_a_sqlite_study(fmnist_root, tmp_path, tuned_dir):
    """`make sweep WORKERS=2`'s own path: the study is created once, submitit's local executor starts two worker
    processes, each trial is recorded once, the test split is never evaluated, the best parameters are exported."""
    from sweeps.launch import run_sweep

    url = f"sqlite:///{tmp_path / 'study.db'}"
    out = io.StringIO()
    res = run_sweep(
        _spec(epochs=4),
        budget=4,
        workers=2,
        storage=url,
        executor="local",
        heartbeat=None,
        threads=1,
        env={"data_dir": str(fmnist_root), "wandb": "disabled", "runs_dir": str(tmp_path / "runs")},
        poll=0.5,
        figures=True,
        out=out,
    )
    assert not res.worker_errors, out.getvalue()
    study = _load(url, res.study_name)
    _check_each_trial_once(study, 4, 2)
    records = [
        json.loads(p.read_text()) for p in (tmp_path / "runs" / "sweeps" / res.study_name / "records").glob("*.json")
    ]
    assert len(records) == 4 and all(r["test"] == {} and r["test_acc"] is None for r in records)  # never test
    # a study with its own budget (not protocol v1's): stored under "custom", never as v1 settings
    best = json.loads((tuned_dir / "fashion_mnist" / "bp.json").read_text())["custom"][ARCH]
    assert best["protocol"] == "custom"
    assert best["params"]["lr"] == res.best_params["lr"] and best["val_acc"] == res.best_value == study.best_value
    assert {f.name for f in res.figures} >= {"optimization_history.png", "trials.csv"}


def test_slurm_job_array_of_two_workers_on_a_journal_study(slurm, fmnist_root, tmp_path):
    """The SLURM launcher (submitit) on the real single-node cluster (.ci/slurm-up): one job array of two tasks,
    both workers on one journal-file study, each trial recorded once."""
    from sweeps.launch import run_sweep

    url = f"journal:{tmp_path / 'study.log'}"
    out = io.StringIO()
    res = run_sweep(
        _spec(),
        budget=4,
        workers=2,
        storage=url,
        executor="slurm",
        heartbeat=None,
        threads=1,
        slurm={"slurm_partition": "debug", "timeout_min": "30", "cpus_per_task": "1"},
        poll=0.5,
        export=False,
        figures=False,
        env={"data_dir": str(fmnist_root), "wandb": "disabled", "runs_dir": str(tmp_path / "runs")},
        out=out,
    )
    assert not res.worker_errors, out.getvalue()
    (script,) = [p.read_text() for p in (tmp_path / "runs" / "sweeps").glob("*/submitit/*_submission.sh")]
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --partition=debug" in script  # one array, two tasks
    # both array tasks ran trials; when each started is the SLURM scheduler's choice (on a loaded CI machine one task
    # can start after the other has finished its trials), so no overlap in time is asserted here
    _check_each_trial_once(_load(url, res.study_name), 4, 2, concurrent=False)


def test_two_workers_share_a_postgresql_study(fmnist_root):
    """A real PostgreSQL server (.ci/run installs and starts Debian's); skipped locally when none is reachable."""
    import sqlalchemy

    from sweeps.storage import normalise
    from sweeps.study import work

    url = normalise(os.environ.get("BENCH_TEST_POSTGRES_URL", "postgresql://bench:bench@localhost:5432/bench_test"))
    try:
        sqlalchemy.create_engine(url).connect().close()
    except Exception as e:  # noqa: BLE001 - any connection failure means no server for this test
        why = f" ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})"
        if os.environ.get("BENCH_TEST_POSTGRES_URL"):
            pytest.fail(PG_HELP.format(url=url) + why + "; BENCH_TEST_POSTGRES_URL is set, so the server must be up")
        pytest.skip(PG_HELP.format(url=url) + why)
    import optuna

    name = f"test-{uuid.uuid4().hex[:8]}"
    c = _fork(_create, _spec(), url, 4, name)
    c.join()
    try:
        procs = [_fork(work, url, name, 2, i, _options(fmnist_root)) for i in range(2)]
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        _check_each_trial_once(_load(url, name), 4, 2)
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_a_killed_worker_loses_no_other_trial_and_a_rerun_tops_up(fmnist_root, tmp_path):
    """Worker B is killed mid-trial: worker A's trials are all kept; the heartbeat marks B's trial FAIL, re-queues
    it with the same parameters, and re-running the sweep finishes the budget."""
    from sweeps.launch import run_sweep
    from sweeps.study import work

    url = f"sqlite:///{tmp_path / 'study.db'}"
    # 100 short epochs make an unpruned trial last a few seconds: with 20 (about half a second) worker B once ran
    # all of its trials, the later ones pruned after 2 epochs, between two polls on an idle CI machine; a trial among
    # the pruner's first three (B's first: A's take seconds each) is never pruned, so B is seen running it
    spec = _spec(epochs=100)
    name = spec.study_name()
    c = _fork(_create, spec, url, 6, None, 1)
    c.join()
    # a 6 s grace period: on a loaded CI machine a live worker's heartbeat thread was once starved for over 2 s, its
    # running trial was reaped by the other worker and worker B died before the poll below saw it
    opts = _options(fmnist_root, heartbeat=1, grace=6)
    a = _fork(work, url, name, 3, 0, opts)
    b = _fork(work, url, name, 3, 1, opts)
    victim = None
    deadline = time.time() + 90
    watch = _load(url, name)  # opened once: re-opening the storage costs about half a second per poll
    while victim is None and time.time() < deadline and b.is_alive():
        time.sleep(0.05)
        for t in watch.get_trials(deepcopy=False, states=(optuna_state("RUNNING"),)):
            if t.user_attrs.get("worker", "").endswith(f":{b.pid}") and t.params:  # named first, then sampled
                victim = t
    assert victim is not None, "worker B never started a trial"
    os.kill(b.pid, signal.SIGKILL)
    killed = time.time()
    b.join()
    a.join(120)
    assert a.exitcode == 0
    trials = _load(url, name).get_trials(deepcopy=False)
    mine = [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{a.pid}")]
    assert len(mine) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in mine)
    # past the 6 s grace period with margin: SQLite keeps heartbeats to the second, so a heartbeat from the last
    # second before the kill can still look 6 s old 6.5 s later (then the re-run counts it as running)
    time.sleep(max(0.0, killed + 8.5 - time.time()))
    res = run_sweep(
        spec,
        budget=6,
        workers=1,
        storage=url,
        executor="inline",
        heartbeat=1,
        grace=6,
        env=opts["env"],
        export=False,
        figures=False,
        out=io.StringIO(),
    )
    trials = _load(url, name).get_trials(deepcopy=False)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [victim.number]
    assert res.counts["COMPLETE"] + res.counts["PRUNED"] == 6
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retried and retried[0].params == victim.params  # re-queued with the same parameters


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_rerun_reaps_stale_trials_with_the_sweeps_own_grace_period(tmp_path):
    """``run_sweep`` reaps trials whose heartbeat is older than its ``grace`` (not the storage default of four
    heartbeats): a trial last seen 3 s ago is stale under heartbeat=1, grace=2."""
    from sweeps.launch import create_study, reap_stale, trial_id

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study, storage = create_study(_spec(), url, 2, None, heartbeat=1, grace=2)
    trial = study.ask()
    storage.record_heartbeat(trial_id(storage, study, trial.number))
    time.sleep(3.05)  # SQLite keeps heartbeats to the second: 3.05 s later they differ by at least 3 s
    assert reap_stale(study, storage) == [trial.number]
    assert study.get_trials(deepcopy=False)[trial.number].state.name == "FAIL"


def optuna_state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


# ------------------------------------------------------------------ pruning, divergence, export, make bench
def test_hopeless_trial_is_pruned_and_a_nan_trial_is_recorded(fmnist_root, tmp_path, tuned_dir):
    from bench.cli import main as bench_main
    from sweeps.best import export_best
    from sweeps.study import read_spec, work

    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = _spec(
        epochs=3,
        fixed={"optimizer": "sgd", "momentum": 0.0},
        startup=2,
        space={"lr": {"type": "float", "low": 1e-9, "high": 1e13, "log": True}},
    )
    spec.protocol = "v1"  # as if this budget were the protocol's: its export is applied by the grid
    name = spec.study_name()
    c = _fork(_create, spec, url, 5)
    c.join()
    study = _load(url, name)
    for lr in (0.1, 0.05, 1e-8, 1e12):  # two good ones, a hopeless one, one that blows up (after the defaults)
        study.enqueue_trial({"lr": lr})
    work(
        url,
        name,
        5,
        0,
        _options(
            fmnist_root, env={"data_dir": str(fmnist_root), "wandb": "disabled", "runs_dir": str(tmp_path / "runs")}
        ),
    )
    trials = {t.params["lr"]: t for t in _load(url, name).get_trials(deepcopy=False)}
    assert trials[1e-3].user_attrs["defaults"] == ["lr"]  # trial 0: the rule's defaults
    assert trials[0.1].state.name == trials[0.05].state.name == "COMPLETE"
    hopeless, nan = trials[1e-8], trials[1e12]
    assert hopeless.state.name == "PRUNED" and hopeless.user_attrs["epochs_done"] == 1  # stopped after epoch 1
    assert hopeless.user_attrs[PRUNE_REASON].startswith("pruned after epoch 1: val/acc")
    assert nan.state.name == "PRUNED" and nan.user_attrs[PRUNE_REASON].startswith("diverged: loss or parameters")

    # best parameters round-trip into `make bench` (python -m bench grid); an explicit option wins
    study = _load(url, name)
    best_lr = study.best_params["lr"]
    exported = export_best(study, read_spec(study), storage=url, budget=5)
    assert exported.written and exported.path == tuned_dir / "fashion_mnist" / "bp.json"

    def grid(*args: str) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            assert (
                bench_main(["grid", "--methods", "bp", "--epochs", "1", "--runs-dir", str(tmp_path / "bench"), *args])
                == 0
            )
        return out.getvalue()

    text = grid("--arch", "mlp:16-C", "--dry-run")
    assert f"lr={best_lr} [tuned: " in text and "optimizer=sgd [tuned: " in text  # fixed options come along
    assert "lr=0.5 [--set]" in grid("--arch", "mlp:16-C", "--dry-run", "--set", "lr=0.5")
    assert "lr=" not in grid("--arch", "mlp:16-C", "--dry-run", "--no-tuned")
    assert "lr=" not in grid("--arch", "mlp:32-C", "--dry-run")  # tuned for mlp:16-C only
    grid(
        "--arch",
        "mlp:16-C",
        "--wandb",
        "disabled",
        "--data-dir",
        str(fmnist_root),
        "--limit-train",
        "200",
        "--limit-eval",
        "200",
        "--no-progress",
    )
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "bench" / "records").glob("*.json")]
    assert rec["config"]["rule"]["lr"] == best_lr and rec["rule_sources"]["lr"].startswith("tuned: ")


def test_pruning_callback_stops_early_never_at_the_last_epoch_and_needs_val_acc():
    from types import SimpleNamespace

    import torch

    from sweeps.study import PruneOnValAcc

    class Trial:
        reports: list = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return True  # the pruner would stop every trial

    def epoch(cb, e, of, metrics):
        tr = SimpleNamespace(
            sanity_checking=False, current_epoch=e - 1, max_epochs=of, should_stop=False, callback_metrics=metrics
        )
        cb.on_train_epoch_end(tr, SimpleNamespace(diverged=False))
        return tr.should_stop

    cb = PruneOnValAcc(Trial())
    assert epoch(cb, 1, 3, {"val/acc": torch.tensor(0.25)}) and cb.pruned_epoch == 1
    cb = PruneOnValAcc(Trial())
    assert not epoch(cb, 3, 3, {"val/acc": torch.tensor(0.5)}) and cb.pruned_epoch is None  # a finished run counts
    assert Trial.reports == [(1, 0.25), (3, 0.5)]
    with pytest.raises(RuntimeError, match="metric 'val/acc' not found"):
        epoch(PruneOnValAcc(Trial()), 1, 3, {"train/loss": torch.tensor(1.0)})
