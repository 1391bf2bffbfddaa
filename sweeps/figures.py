"""A study's own figures and trial table, written to reports/out/sweeps/<study>/ (never committed)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from bench.paths import PROJECT_ROOT

REPORTS_OUT = PROJECT_ROOT / "reports" / "out"


def figures_dir(study_name: str, root: str | os.PathLike | None = None) -> Path:
    from sweeps.study import safe_study_name  # a name read from a shared storage is a path here

    return Path(root or os.environ.get("BENCH_REPORTS_DIR") or REPORTS_OUT) / "sweeps" / safe_study_name(study_name)


def write_figures(study, root: str | os.PathLike | None = None) -> tuple[list[Path], list[str]]:
    """Optimisation history, parameter importance, per-epoch validation curves (pruning visible) and trials.csv.
    Returns the files written and the figures skipped, with why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    out = figures_dir(study.study_name, root)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    df = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    df.to_csv(out / "trials.csv", index=False)
    written.append(out / "trials.csv")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = [
        ("optimization_history.png", lambda: ovm.plot_optimization_history(study, target_name="val/acc"), 1),
        ("param_importances.png", lambda: ovm.plot_param_importances(study), 2),
        ("intermediate_values.png", lambda: ovm.plot_intermediate_values(study), 1),
    ]
    for fname, make, need in plots:
        if len(complete) < need:
            skipped.append(f"{fname}: needs {need} completed trial(s), the study has {len(complete)}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = make()
            ax0 = ax.flat[0] if hasattr(ax, "flat") else ax
            if fname.startswith("intermediate"):
                ax0.set_xlabel("epoch")
                ax0.set_ylabel("val/acc")
            fig = ax0.get_figure()
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(out / fname, dpi=110)
            plt.close(fig)
            written.append(out / fname)
        except (RuntimeError, ValueError, ZeroDivisionError) as e:  # e.g. importance of a single distinct value
            skipped.append(f"{fname}: {type(e).__name__}: {e}")
            plt.close("all")
    return written, skipped
