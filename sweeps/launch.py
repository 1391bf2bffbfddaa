"""Create a study once, start its workers, wait, export the best parameters and the figures.

Executors (all run ``sweeps.study.work``):
  local   submitit's LocalExecutor: one process per worker on this machine (default)
  slurm   submitit on SLURM: a job array of ``workers`` tasks on one study (needs a shared storage:
          PostgreSQL, or journal:/sqlite: on a shared filesystem)
  inline  the workers' shares one after another in this process (debugging)

Budget: ``budget`` counts finished trials (complete + pruned). Re-running the same command tops the study up
to the budget: failed trials (a crash, a killed worker) do not count, so they are replaced.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, Interrupted
from bench.executors import executor_class
from bench.records import process_alive
from sweeps.storage import STUDIES_DIR, kind, open_storage, redact
from sweeps.study import (
    BUDGET_ATTR,
    DEFAULTS_ATTR,
    PRUNE_REASON,
    SPEC_ATTR,
    StudySpec,
    defaults_trial,
    read_spec,
    safe_study_name,
    show_params,
)


@dataclass
class SweepResult:
    study_name: str
    storage: str
    counts: dict[str, int]
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    exported: Path | None = None
    """The tuned-parameter file written (None: nothing exported, or the entry there was kept)."""
    figures: list[Path] = field(default_factory=list)
    worker_errors: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    """Job ids when the launcher did not wait (SLURM --no-wait)."""


def counts(study) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def shares(remaining: int, workers: int) -> list[int]:
    """Split ``remaining`` trials over at most ``workers`` workers as evenly as possible (no empty worker)."""
    n = min(workers, remaining)
    return [remaining // n + (i < remaining % n) for i in range(n)] if n > 0 else []


def create_study(
    spec: StudySpec,
    url: str,
    budget: int,
    name: str | None = None,
    heartbeat: int | None = 30,
    grace: int | None = None,
):
    """Create the study (or load it when it exists with the same spec), once, before any worker starts; return it
    with the storage object it was opened on. That storage carries the sweep's heartbeat and grace period:
    ``reap_stale`` judges stale trials with them, and writes through it."""
    import optuna

    name = name or spec.study_name()
    st = open_storage(url, heartbeat=heartbeat, grace=grace, check=True)
    study = optuna.create_study(storage=st, study_name=name, direction="maximize", load_if_exists=True)
    old = study.user_attrs.get(SPEC_ATTR)
    if old is None:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
        with warnings.catch_warnings():  # a default outside the searched range is tried as it is
            warnings.simplefilter("ignore")
            defaults = defaults_trial(spec)
            study.enqueue_trial(defaults, user_attrs={DEFAULTS_ATTR: sorted(defaults)})
    elif StudySpec.from_dict(old).digest() != spec.digest():
        raise ConfigError(
            f"study {name!r} in {redact(url)} was created with a different protocol; "
            "drop --study-name to get a study named after this one, or delete the old study"
        )
    study.set_user_attr(BUDGET_ATTR, budget)
    return study, st


def trial_id(storage, study, number: int) -> int:
    """The storage's id of trial ``number`` of ``study`` (Optuna's public storage API; trials keep it private)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def reap_stale(study, storage) -> list[int]:
    """Mark trials whose worker is gone as FAIL and re-queue each once with the same parameters.

    Any storage: a trial whose worker ran on this host and whose process is gone (no such pid, a zombie, or a pid
    reused by a later process) is reaped at once. Database storages then also use Optuna's heartbeat, which finds
    dead workers on other hosts after the grace period; a journal file has no heartbeat. ``storage``: the storage
    object ``study`` was opened on (``create_study`` returns it)."""
    import copy

    import optuna
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        whost, _, pid = str(t.user_attrs.get("worker", "")).partition(":")
        if whost != host or not pid.isdigit() or process_alive(int(pid), t.user_attrs.get("worker_started")):
            continue
        tid = trial_id(storage, study, t.number)
        storage.set_trial_user_attr(tid, "error", f"worker process {pid} on {host} died during the trial")
        try:
            if not storage.set_trial_state_values(tid, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another launcher reaped it first
            continue
        dead = copy.deepcopy(storage.get_trial(tid))
        for key in ("worker", "worker_started", "error"):  # the retry is a new trial: not the dead worker's
            dead.user_attrs.pop(key, None)
        optuna.storages.RetryFailedTrialCallback(max_retry=1)(study, dead)
    if isinstance(storage, optuna.storages.RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def _best(study) -> tuple[float | None, dict[str, Any]]:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None, {}
    b = max(done, key=lambda t: t.value)
    return b.value, dict(b.params)


def _status(study) -> str:
    c = counts(study)
    value, params = _best(study)
    best = f"best val/acc {value:.4f} ({show_params(params)})" if value is not None else "no completed trial yet"
    return (
        f"{c['COMPLETE'] + c['PRUNED']} finished ({c['COMPLETE']} complete, {c['PRUNED']} pruned), "
        f"{c['FAIL']} failed, {c['RUNNING']} running; {best}"
    )


def run_sweep(
    spec: StudySpec,
    *,
    budget: int,
    workers: int = 1,
    storage: str,
    executor: str = "local",
    study_name: str | None = None,
    env: dict[str, Any] | None = None,
    slurm: dict[str, Any] | None = None,
    heartbeat: int | None = 30,
    grace: int | None = None,
    threads: int | None = None,
    sampler_seed: int = 0,
    wait: bool = True,
    export: bool = True,
    figures: bool = True,
    poll: float = 10.0,
    export_force: bool = False,
    out=None,
) -> SweepResult:
    """The whole sweep of one study; see the module docstring."""
    out = out or sys.stdout
    import optuna

    from sweeps.best import export_best
    from sweeps.figures import write_figures

    ex_class = executor_class(executor)
    if budget < 1 or workers < 1:
        raise ConfigError(f"trials and workers must be >= 1 (got trials={budget}, workers={workers})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, st = create_study(spec, storage, budget, study_name, heartbeat, grace)
    name = study.study_name
    reaped = reap_stale(study, st)
    if reaped:
        print(f"sweep {name}: trial(s) {reaped} had lost their worker; marked FAIL and re-queued", file=out)
    c = counts(study)
    remaining = budget - c["COMPLETE"] - c["PRUNED"] - c["RUNNING"]
    plan = shares(remaining, workers)
    from sweeps.study import budget_line

    print(
        f"sweep {name}\n  {budget_line(spec, budget, (env or {}).get('data_dir'))}; sampler seed "
        f"{spec.seed_of_sampler()}; trial 0 = the rule's defaults"
        f"\n  storage {redact(storage)}; budget {budget} finished trials; {c['COMPLETE'] + c['PRUNED']} "
        f"finished, {c['RUNNING']} running, {c['FAIL']} failed so far; starting {sum(plan)} trial(s) on "
        f"{len(plan)} {executor} worker(s) {plan}",
        file=out,
    )
    result = SweepResult(name, storage, c)
    if plan:
        options = {
            "heartbeat": heartbeat,
            "grace": grace,
            "env": dict(env or {}),
            # a top-up draws TPE points the earlier launch did not (the Sobol sequence continues in the storage)
            "sampler_seed": sampler_seed + 1000 * (c["COMPLETE"] + c["PRUNED"] + c["FAIL"]),
            "threads": threads or (max(1, (os.cpu_count() or 1) // len(plan)) if ex_class.this_machine else None),
        }
        if ex_class.in_process:
            from sweeps.study import work

            for i, n in enumerate(plan):
                work(storage, name, n, i, options)
        else:
            from bench.paths import runs_root

            folder = runs_root((env or {}).get("runs_dir")) / "sweeps" / safe_study_name(name) / "submitit"
            ex = ex_class(folder, slurm)
            jobs = _submit(ex, storage, name, plan, options, out)
            if not wait:
                result.submitted = [j.job_id for j in jobs]
                print(
                    f"submitted job(s) {', '.join(result.submitted)}; follow with `python -m bench sweep "
                    f"--export-only ...` once they finish",
                    file=out,
                )
                return result
            result.worker_errors = _wait(ex, jobs, study, poll, out)
            reaped = reap_stale(study, st)  # trials of workers that died: FAIL with the reason, re-queued
            if reaped:
                print(f"  trial(s) {reaped} lost their worker: marked FAIL and re-queued for the next run", file=out)
    study = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat=None))
    result.counts = counts(study)
    result.best_value, result.best_params = _best(study)
    print(f"sweep {name}: {_status(study)}", file=out)
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "PRUNED" and PRUNE_REASON in t.user_attrs:
            print(f"  trial {t.number} {t.params}: {t.user_attrs[PRUNE_REASON]}", file=out)
        elif t.state.name == "FAIL" and "error" in t.user_attrs:
            print(f"  trial {t.number} {t.params}: failed: {t.user_attrs['error']}", file=out)
    finished = result.counts["COMPLETE"] + result.counts["PRUNED"]
    if finished < budget:
        print(
            f"  {budget - finished} trial(s) of the budget are missing (failed or still running): run the same "
            "command again to top the study up",
            file=out,
        )
    transfer = None
    if export and finished >= budget:
        transfer = transfer_check(study, read_spec(study), env, out)
    if export:
        exported = export_best(
            study, read_spec(study), storage=storage, force=export_force, budget=budget, transfer=transfer
        )
        result.exported = exported.path if exported.written else None
        print(f"  {exported.message}", file=out)
    if figures:
        result.figures, skipped = write_figures(study)
        if result.figures:
            print(f"  figures -> {result.figures[0].parent}/", file=out)
        for s in skipped:
            print(f"  (figure skipped: {s})", file=out)
    return result


def transfer_check(study, spec: StudySpec, env: dict[str, Any] | None, out) -> dict[str, Any] | None:
    """A study of the protocol tuned at a shorter budget (``Protocol.short``): train its best setting once at the
    evaluation budget (the protocol's first evaluation seed, its epochs, the whole training split) and compare the
    last epoch's validation accuracy with the best trial's. It passes unless the run diverges or falls more than
    ``transfer_tolerance`` below; None where no check is needed (tuned at the evaluation budget, or a custom study)."""
    from bench.paths import runs_root
    from bench.protocol import get_protocol
    from bench.run import run
    from sweeps.best import best_trial

    p = get_protocol()
    best = best_trial(study)
    if spec.protocol != p.name or not p.is_short(spec.method) or best is None:
        return None
    epochs = p.evaluation_epochs(spec.method)
    env = dict(env or {})
    env["runs_dir"] = str(runs_root(env.get("runs_dir")) / "sweeps" / safe_study_name(study.study_name) / "transfer")
    run_settings = {k: v for k, v in spec.run.items() if k != "limit_train"}
    from bench.run import RunConfig

    cfg = RunConfig(
        dataset=spec.dataset,
        method=spec.method,
        arch=spec.arch,
        seed=p.seeds[0],
        epochs=epochs,
        rule={**spec.fixed, **best.params},
        **run_settings,
        **env,
        progress=False,
        evaluate_test=False,
        group=f"transfer/{study.study_name}",
        job_type="sweep",
    )
    print(f"  transfer check: trial {best.number}'s setting at {epochs} epoch(s) on the whole training split", file=out)
    result = run(cfg)
    history = result.record.get("history") or []
    val = history[-1].get("val/acc") if history else None
    ok = result.status == "completed" and val is not None and val >= best.value - p.transfer_tolerance
    summary = (
        f"val/acc {val:.4f} at {epochs} epoch(s) vs the best trial's {best.value:.4f} at "
        f"{spec.epochs} epoch(s) x {spec.run.get('limit_train') or 'all'} samples"
        if val is not None
        else f"the evaluation run {result.status}"
    )
    print(f"  transfer check {'passed' if ok else 'FAILED (did not transfer)'}: {summary}", file=out)
    return {
        "ok": bool(ok),
        "val_acc": val,
        "best_trial_val_acc": best.value,
        "epochs": epochs,
        "seed": p.seeds[0],
        "status": result.status,
        "tolerance": p.transfer_tolerance,
        "run": result.name,
        "summary": summary,
    }


def _submit(
    ex,
    storage: str,
    name: str,
    plan: list[int],
    options: dict[str, Any],
    out,
) -> list:
    from sweeps.study import work

    if ex.shared_files and kind(storage) == "sqlite" and storage.endswith("optuna.db") and str(STUDIES_DIR) in storage:
        print(
            f"warning: {ex.name} workers on the default SQLite file only work when the project folder is on a "
            "filesystem shared by the nodes; PostgreSQL (STORAGE=postgresql://...) is the robust choice",
            file=out,
        )
    n = len(plan)
    jobs = ex.submit(work, [(storage, name, plan[i], i, options) for i in range(n)], name=f"sweep-{name}")
    print(f"  {len(jobs)} worker job(s): {', '.join(j.job_id for j in jobs)}; logs in {ex.folder}/", file=out)
    return jobs


def _wait(ex, jobs: list, study, poll: float, out) -> list[str]:
    """Wait for every worker, printing the study's progress; a worker that crashes is reported, the others go on."""
    last = ""
    try:
        while not all(ex.poll(j) for j in jobs):
            line = _status(study)
            if line != last:
                print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=out, flush=True)
                last = line
            time.sleep(poll)
    except (KeyboardInterrupt, Interrupted):
        ex.cancel(jobs)
        raise
    errors = []
    for i, j in enumerate(jobs):  # one dead worker must not hide the others' results
        err = ex.exit_reason(j)
        if err:
            errors.append(f"worker {i} (job {j.job_id}) failed: {err}")
            print(f"  {errors[-1]}", file=out)
    return errors
