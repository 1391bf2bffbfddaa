"""``make perf``: seconds per training epoch of every rule beside BP, and of the harness beside a plain PyTorch loop.

* **Per-rule table.** Each rule trains through the harness (``bench.run``) on one shared shape (``--arch``, default
  784-1024-C) when it can train it, and also on its own default architecture when that is not a C-way classifier
  (SPELA, SPELA(O), FF, SPELA CNN read out class vectors or goodness). Beside every rule run, in the same process and
  alternating with it round by round, BP trains the same network (plus a C-way output layer where the rule's network
  has none), so machine noise hits both alike. The table gives the median over rounds of rule/BP, beside the ratio
  bench/efficiency.py's model predicts (weight-sized multiply-adds per update, the optimiser not counted).
* **Step column.** Each rule's ``training_step`` against BP's in alternating blocks of steps in this process
  (``step_table``), steadier than whole runs; ``--rounds 0`` times only this. ``--compile`` adds BP and the rule with
  their steps compiled, to both the whole runs and the step rotation.
* **Harness vs plain loop.** BP through the harness beside a textbook loop on the same in-memory tensors (same arch,
  batch size, optimiser builder, shuffling by index), alternating epoch by epoch inside one run (the plain epoch runs
  after each harness epoch); the median of the epoch pairs' ratios is the harness's overhead (Lightning hooks,
  logging, metric bookkeeping).

Seconds per epoch count the training loop only (first to last training batch, validation excluded) and leave out
each run's first epoch (warm-up), so ``--epochs`` must be at least 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from bench.paths import runs_root


class PlainLoop:
    """A textbook PyTorch loop: same network builder and optimiser builder as BP's defaults, shuffled index batches
    of the in-memory tensors. ``epoch()`` trains one epoch and returns its seconds."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, arch: str, num_classes: int, batch_size: int, seed: int
    ) -> None:
        from methods.arch import ArchSpec, build_network
        from methods.bp import BPConfig
        from methods.optim import build_optimizer

        torch.manual_seed(seed)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.net = build_network(ArchSpec.parse(arch), tuple(x.shape[1:]), num_classes).to(x.device)
        self.opt = build_optimizer(self.net.parameters(), BPConfig())
        self.g = torch.Generator(device=x.device).manual_seed(seed)

    def epoch(self) -> float:
        x, y, net, opt = self.x, self.y, self.net, self.opt
        with torch.enable_grad():
            t0 = time.perf_counter()
            perm = torch.randperm(len(x), generator=self.g, device=x.device)
            for i in range(0, len(x), self.batch_size):
                idx = perm[i : i + self.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(x[idx]), y[idx])
                loss.backward()
                opt.step()
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t0


class PlainBeside(Callback):
    """Alternates a ``PlainLoop`` with the harness epoch by epoch: after each training epoch of the run, one plain
    epoch on the same tensors (outside the run's timed span), so both see the same machine state."""

    def __init__(self, loop: PlainLoop) -> None:
        self.loop = loop
        self.epochs: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append(self.loop.epoch())


class TrainClock(Callback):
    """Seconds from each training epoch's start to the end of its last training batch (validation excluded)."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self._t0 = self._last = 0.0

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = self._last = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last = self._now(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append(self._last - self._t0)


def _median(values: list[float]) -> float | None:
    """The median, None for no values (a column that was not measured)."""
    return statistics.median(values) if values else None


@dataclass
class Row:
    """One line of the per-rule table: a rule on one arch, BP beside it."""

    method: str
    arch: str
    bp_arch: str
    model: float | None
    """Ratio rule/BP of the efficiency model's multiply-adds per update (None: the model does not cover the rule)."""
    optimizer: str
    bp_optimizer: str = "adam"
    draws: int = 0
    """Random numbers the rule draws per sample and update (its cost model's ``draws``)."""
    layerwise: bool = False
    short: str = ""
    """The rule's arch as the table shows it (``ArchSpec.short``)."""
    bp_short: str = ""
    note: str = ""
    """The model's note on the rule (what it counts, what it leaves out)."""
    rule_s: list[float] = field(default_factory=list)
    bp_s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    compiled_s: list[float] = field(default_factory=list)
    """--compile: the rule's seconds per epoch with its step compiled, run right after its eager run."""
    bp_compiled_s: list[float] = field(default_factory=list)
    """--compile: BP's seconds per epoch with its network compiled, the partner of ``compiled_s``."""
    step_ratios: list[float] = field(default_factory=list)
    """Per pair of step blocks (``step_table``): the rule's seconds over BP's."""
    step_ms: float | None = None
    bp_step_ms: float | None = None
    compiled_step_ratios: list[float] = field(default_factory=list)
    """--compile: ``step_ratios`` with both rules' steps compiled (``LearningRule.compile_step``)."""
    compiled_eager_bp_ratios: list[float] = field(default_factory=list)
    """--compile: the compiled rule's step over eager BP's, in the same rotation."""

    @property
    def ratio(self) -> float | None:
        """Median over rounds of rule/BP seconds per epoch (None with ``--rounds 0``: steps only)."""
        return _median(self.ratios)

    @property
    def step_ratio(self) -> float | None:
        return _median(self.step_ratios)

    @property
    def compile_gain(self) -> float | None:
        """Median over rounds of compiled/eager seconds per epoch of the rule (None without --compile)."""
        if not self.compiled_s:
            return None
        return statistics.median(c / e for c, e in zip(self.compiled_s, self.rule_s))

    @property
    def compiled_ratio(self) -> float | None:
        """Median over rounds of the compiled rule's seconds per epoch over compiled BP's (None without --compile)."""
        if not self.compiled_s:
            return None
        return statistics.median(c / b for c, b in zip(self.compiled_s, self.bp_compiled_s))

    @property
    def compiled_step_ratio(self) -> float | None:
        return _median(self.compiled_step_ratios)

    @property
    def compiled_eager_bp_ratio(self) -> float | None:
        return _median(self.compiled_eager_bp_ratios)


def bp_arch_for(arch: str, num_classes: int) -> str:
    """BP's network beside a rule's: the same one when BP can train it, else the same layers plus a C-way read-out
    (an MLP gets a C-unit last layer, a CNN its Linear head)."""
    from bench.errors import ArchError
    from methods.arch import ArchSpec
    from methods.registry import get_rule

    bp = get_rule("bp")
    try:
        bp.parse_arch(arch, num_classes)
        return arch
    except ArchError:
        pass
    spec = ArchSpec.parse(arch)
    head, *opts = arch.split(",")
    if spec.kind == "mlp":
        return ",".join([f"{head}-C", *opts])
    return ",".join([head, *[o for o in opts if not o.startswith("head=")]])


def plan(methods: list[str], arch: str, in_shape: tuple[int, ...], num_classes: int) -> list[Row]:
    """The table's rows: every rule on ``arch`` if it can train it, and on its own default arch when that is not a
    C-way classifier; each with BP's arch beside it and the model's ratio."""
    from bench.efficiency import theory, theory_note
    from bench.errors import ArchError
    from methods.registry import get_rule

    rows = []
    for m in methods:
        cls = get_rule(m)
        archs = []
        try:
            cls.parse_arch(arch, num_classes)
            archs.append(arch)
        except ArchError:
            pass
        if not cls.needs_class_output or not archs:
            own = cls.default_arch
            if own not in archs:
                archs.append(own)
        for a in archs:
            b = bp_arch_for(a, num_classes)
            rule = cls.create({}, a, in_shape, num_classes, epochs=3)
            ref = get_rule("bp").create({}, b, in_shape, num_classes, epochs=3)
            th, th_bp = theory(rule), theory(ref)
            model, note = None, th.note if th is not None else theory_note(rule)
            if th is not None and th_bp is not None:
                dims = [math.prod(in_shape), *rule.net.widths]
                dims_bp = [math.prod(in_shape), *ref.net.widths]
                model = th.macs(dims) / th_bp.macs(dims_bp)
            rows.append(
                Row(
                    m,
                    a,
                    b,
                    model,
                    rule.config.optimizer,
                    bp_optimizer=ref.config.optimizer,
                    draws=th.draws if th is not None else 0,
                    layerwise=rule.layerwise,
                    short=rule.arch.short,
                    bp_short=ref.arch.short,
                    note=note,
                )
            )
    return rows


def _epoch_seconds(cfg, beside: list | None = None) -> list[float]:
    """Train ``cfg`` through the harness (with the callbacks ``beside``); seconds of every training epoch after the
    first."""
    from bench.run import run

    clock = TrainClock()
    cfg.callbacks = [clock, *(beside or [])]
    res = run(cfg)
    if res.status != "completed":
        raise RuntimeError(f"{cfg.method} on {cfg.arch}: run {res.status}")
    return clock.epochs[1:]


def rule_table(rows: list[Row], base: dict, rounds: int, log=print, compiled: bool = False) -> None:
    """Fill every row's times: BP and the rule one after the other within each round (rounds outermost; BP first in
    even rounds, the rule first in odd ones, so that an effect of the order cancels); ``compiled``: both once more
    with ``--compile`` (the rule's step, BP's network), in the same order, after their eager runs."""
    from bench.run import RunConfig

    for r in range(rounds):
        for row in rows:
            order = ("bp", "rule") if r % 2 == 0 else ("rule", "bp")
            modes = (False, True) if compiled else (False,)
            secs = {}
            for comp in modes:
                runs = {
                    "bp": RunConfig(method="bp", arch=row.bp_arch, seed=r, compile=comp, **base),
                    "rule": RunConfig(method=row.method, arch=row.arch, seed=r, compile=comp, **base),
                }
                for k in order:
                    secs[k, comp] = statistics.mean(_epoch_seconds(runs[k]))
            bp, rule = secs["bp", False], secs["rule", False]
            row.bp_s.append(bp)
            row.rule_s.append(rule)
            row.ratios.append(rule / bp)
            extra = ""
            if compiled:
                comp, bp_comp = secs["rule", True], secs["bp", True]
                row.compiled_s.append(comp)
                row.bp_compiled_s.append(bp_comp)
                extra = f"; compiled {comp:7.3f}, bp {bp_comp:7.3f}: {comp / bp_comp:.2f} ({comp / rule:.2f} of eager)"
            log(
                f"  round {r + 1}/{rounds} {row.method:14s} {row.short:22s} {rule:7.3f} s/epoch, bp {bp:7.3f}: "
                f"{rule / bp:.2f}{extra}",
                flush=True,
            )


def _stepper(
    method: str,
    arch: str,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    num_classes: int,
    seed: int,
    compiled: bool = False,
):
    """A function running one ``training_step`` of ``method`` (its defaults; ``compiled``: its step compiled) on the
    next full shuffled batch of (x, y), outside a Trainer (``LearningRule.standalone``). A short last batch is skipped:
    its shape would make a compiled step compile again inside a timed block."""
    from bench.data import TensorBatches
    from methods.registry import get_rule

    torch.manual_seed(seed)
    rule = get_rule(method).create({}, arch, tuple(x.shape[1:]), num_classes, epochs=3).to(x.device).standalone()
    if compiled:
        rule.compile_step()
    batches = TensorBatches(x, y, batch_size, shuffle=True, seed=seed)
    it = iter(batches)

    def step() -> None:
        nonlocal it
        batch = next(it, None)
        if batch is None or len(batch[1]) < batch_size:
            it = iter(batches)
            batch = next(it)
        rule.training_step(batch, 0)

    return step


def _alternate(fns: dict, pairs: int, block: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per block of ``block`` calls of every function of ``fns``, round after round, in the dict's order in
    even rounds and reversed in odd ones (B R R B ... for two), so an effect of the order cancels; round 0 is warm-up
    (and holds any compilation). Per key the list of timed blocks, round by round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for i in range(pairs + 1):
        for k in keys if i % 2 == 0 else keys[::-1]:
            t0 = time.perf_counter()
            for _ in range(block):
                fns[k]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # round 0 is warm-up
                times[k].append(time.perf_counter() - t0)
    return times


def _ratios(times: dict[str, list[float]], a: str, b: str) -> list[float]:
    return [p / q for p, q in zip(times[a], times[b])]


def step_table(
    rows: list[Row],
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    batch_size: int,
    pairs: int,
    block: int,
    log=print,
    compiled: bool = False,
) -> None:
    """Every row's update step against BP's: both rules' ``training_step`` (the harness's per-step code: the rule's
    update and the optimiser step; Lightning's loop around it is the same for every rule) on their own shuffled
    batches of (x, y), in blocks of ``block`` steps alternating B R R B B R ... in this process, after one warm-up
    block each. Per pair of blocks the ratio rule/BP; adjacent blocks see the same machine state, so the median over
    ``pairs`` is steadier than whole runs'. ``compiled``: BP and the rule each also with its step compiled
    (``compile_step``: the rule's written-out step, BP's network), the four in one rotation; the compiled rule is
    compared with compiled BP and with eager BP (the faster of BP's two on a CPU may be the eager one). Layer-wise
    rules (SPELA, SPELA CNN) are left out: their step changes with the epoch's phase, which only a whole run goes
    through."""
    from bench.run import steady_process
    from methods.registry import get_rule

    for row in rows:
        if get_rule(row.method).layerwise:
            continue
        fns = {
            "bp": _stepper("bp", row.bp_arch, x, y, batch_size, num_classes, 0),
            "rule": _stepper(row.method, row.arch, x, y, batch_size, num_classes, 0),
        }
        if compiled:
            fns["bp/c"] = _stepper("bp", row.bp_arch, x, y, batch_size, num_classes, 0, compiled=True)
            fns["rule/c"] = _stepper(row.method, row.arch, x, y, batch_size, num_classes, 0, compiled=True)
        steady_process()  # a first import of Lightning while building the rules sets its NVML check again
        times = _alternate(fns, pairs, block, x.device)
        ms = {k: statistics.median(v) / block * 1e3 for k, v in times.items()}
        row.step_ratios, row.step_ms, row.bp_step_ms = _ratios(times, "rule", "bp"), ms["rule"], ms["bp"]
        extra = ""
        if compiled:
            row.compiled_step_ratios = _ratios(times, "rule/c", "bp/c")
            row.compiled_eager_bp_ratios = _ratios(times, "rule/c", "bp")
            extra = (
                f"; compiled {ms['rule/c']:.2f}, bp {ms['bp/c']:.2f}: {row.compiled_step_ratio:.2f}, "
                f"over eager bp {row.compiled_eager_bp_ratio:.2f}"
            )
        log(
            f"  steps {row.method:14s} {row.short:22s} {ms['rule']:8.2f} ms/step, bp {ms['bp']:6.2f}: "
            f"{row.step_ratio:.2f}{extra} (median of {pairs} rounds of {block}-step blocks)",
            flush=True,
        )


def why_off(row: Row, measured: float, batch_size: int | None = None) -> str:
    """Why a row's measured ratio is off its model's, from what the model leaves out: random draws, the optimiser
    step (the model counts none), the loop and optimiser both runs share, a layer-wise rule's phases."""
    off, why = measured / row.model, []
    if row.draws and off > 1:
        per_step = f" ({row.draws * batch_size / 1e6:.0f} M per step)" if batch_size else ""
        why.append(
            f"it draws {row.draws / 1e6:.2f} M random numbers per sample{per_step}, which the model's multiply-adds "
            "leave out"
        )
    if row.layerwise:
        why.append("layer-wise: the timed epochs train the layers of their phases, the model prices one phase")
    if off < 1 and row.optimizer != row.bp_optimizer:
        why.append(
            f"its {row.optimizer} step is cheaper than BP's {row.bp_optimizer}, and the model counts no optimiser"
        )
    if off < 1 and row.model > 1:
        why.append("the optimiser step and the loop, alike for both, pull the measured ratio towards 1")
    if not why:
        why.append("work outside the weight-sized products (elementwise, random draws), which the model does not count")
    return f"{'; '.join(why)} (model: {row.note})"


def format_table(rows: list[Row], batch_size: int | None = None) -> str:
    """The table: per row the epoch times and their ratio, the step ratio (``step_table``; '-' when not measured),
    the model's ratio, and below it the rows whose measured ratio (the step ratio where there is one) is more than
    1.2x off the model's, with the model's note."""
    compiled = any(r.compiled_s or r.compiled_step_ratios for r in rows)

    def fmt(q: float | None, width: int) -> str:
        return f"{'-' if q is None else f'{q:.2f}':>{width}s}"

    lines = [
        f"{'method':14s} {'arch':22s} {'bp arch':22s} {'opt':5s} {'s/epoch':>8s} {'bp s/ep':>8s} "
        f"{'rule/bp':>7s} {'step':>5s} {'model':>6s}"
        f"{'  compiled: rule/bp  step  /e.bp c/eager' if compiled else ''}  rounds (rule/bp)"
    ]

    def secs(times: list[float]) -> str:
        return f"{statistics.median(times):8.3f}" if times else f"{'-':>8s}"

    for row in rows:
        comp = ""
        if compiled:
            comp = (
                f"{fmt(row.compiled_ratio, 19)} {fmt(row.compiled_step_ratio, 5)} "
                f"{fmt(row.compiled_eager_bp_ratio, 5)} {fmt(row.compile_gain, 7)}"
            )
        lines.append(
            f"{row.method:14s} {row.short:22s} {row.bp_short:22s} {row.optimizer:5s} "
            f"{secs(row.rule_s)} {secs(row.bp_s)} {fmt(row.ratio, 7)} "
            f"{fmt(row.step_ratio, 5)} {fmt(row.model, 6)}{comp}  "
            f"{', '.join(f'{q:.2f}' for q in row.ratios)}"
        )

    def measured(row: Row) -> float | None:
        return row.step_ratio if row.step_ratio is not None else row.ratio

    off = [
        row
        for row in rows
        if measured(row) is not None and (row.model is None or not 1 / 1.2 <= measured(row) / row.model <= 1.2)
    ]
    if off:
        lines.append("\nrows off the model by more than 1.2x (or without one), and why:")
    for row in off:
        if row.model is None:
            lines.append(f"  {row.method} {row.short}: no model ({row.note})")
        else:
            lines.append(
                f"  {row.method} {row.short}: {measured(row) / row.model:.2f}x the model's ratio: "
                f"{why_off(row, measured(row), batch_size)}"
            )
    return "\n".join(lines)


def _methods(spec: str) -> list[str]:
    import methods  # noqa: F401 - registers the rules
    from methods.registry import get_rule, list_rules

    names = [m.strip() for m in spec.split(",") if m.strip()]
    if names == ["all"]:
        return [m for m in list_rules() if get_rule(m).in_all]
    for m in names:
        get_rule(m)  # an unknown name is a ConfigError listing the valid ones
    return names


def main(argv: list[str] | None = None) -> int:
    from bench.data import TensorDataModule, get_dataset_info
    from bench.errors import BenchError

    ap = argparse.ArgumentParser(prog="python -m bench perf", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--methods",
        default="all",
        help="comma-separated rule names, or all (every rule METHODS=all runs); none: only the harness/plain line",
    )
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--arch", default="mlp:1024-C", help="the shared shape (default mlp:1024-C)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2; the first is warm-up)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating BP/rule rounds of whole runs (the table shows the median); 0: the step column only",
    )
    ap.add_argument("--limit-train", type=int, default=None, help="train on only this many samples (quicker)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument(
        "--step-pairs",
        type=int,
        default=20,
        help="pairs of alternating BP/rule blocks of update steps timed per row (0: no step column)",
    )
    ap.add_argument("--step-block", type=int, default=10, help="update steps per block of the step column")
    ap.add_argument("--no-plain", action="store_true", help="skip the harness-vs-plain-loop line")
    ap.add_argument(
        "--plain-epochs",
        type=int,
        default=6,
        help="epochs of each harness run beside the plain loop (>= 2; the first epoch pair is warm-up)",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time every rule and BP with --compile (torch.compile of the rule's step, BP's network), beside "
        "their eager runs and steps",
    )
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    try:
        if args.epochs < 2:
            raise BenchError(f"--epochs must be >= 2 (the first epoch is warm-up), got {args.epochs}")
        if args.plain_epochs < 2:
            raise BenchError(f"--plain-epochs must be >= 2 (the first epoch is warm-up), got {args.plain_epochs}")
        if args.step_pairs < 0 or args.step_block < 1:
            raise BenchError(
                f"--step-pairs must be >= 0 and --step-block >= 1, got {args.step_pairs} and {args.step_block}"
            )
        if args.rounds < 0 or (args.rounds == 0 and not args.step_pairs):
            raise BenchError(
                f"--rounds must be >= 1, or 0 (no whole runs: the step column only) with --step-pairs > 0, got "
                f"{args.rounds} and {args.step_pairs}"
            )
        info = get_dataset_info(args.dataset)
        methods = [] if args.methods == "none" else _methods(args.methods)
        rows = plan(methods, args.arch, info.shape, info.num_classes)
    except BenchError as e:
        print(f"error: {e}")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):  # the table, not a Trainer banner per run
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|srun|torch.jit.script).*")  # library chatter, not the table
    torch.set_flush_denormal(True)
    from bench.run import steady_process

    steady_process()  # the process settings of every run, for the plain loop too
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = dict(
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        wandb="disabled",
        progress=False,
        epoch_lines=False,
        data_dir=args.data_dir,
        runs_dir=str(runs_root() / "perf"),
        group="perf",
        limit_train=args.limit_train,
        limit_eval=500,
        evaluate_test=False,
    )
    dm = TensorDataModule(
        args.dataset, root=args.data_dir, batch_size=args.batch_size, device=device, limit_train=args.limit_train
    )
    dm.setup()
    x, y = dm.splits["train"]
    print(
        f"dataset={args.dataset} batch={args.batch_size} device={x.device.type} threads={torch.get_num_threads()} "
        f"train samples={len(x)} epochs={args.epochs} (first not timed) rounds={args.rounds} "
        f"plain-loop epochs={args.plain_epochs} torch={torch.__version__}",
        flush=True,
    )
    if rows:
        if args.step_pairs:
            step_table(
                rows, x, y, dm.num_classes, args.batch_size, args.step_pairs, args.step_block, compiled=args.compile
            )
        rule_table(rows, base, args.rounds, compiled=args.compile)  # --rounds 0: no whole runs
        print(
            "\nseconds per training epoch, median over rounds; rule/bp: median of the per-round ratios; step: median "
            f"rule/bp of {args.step_pairs} alternating blocks of {args.step_block} update steps; model: "
            "bench/efficiency.py's multiply-adds per update, rule/bp"
            + (
                "; compiled (--compile): rule/bp and step with both compiled, /e.bp the compiled rule's step over "
                "eager BP's, c/eager the rule's compiled epoch over its eager one"
                if args.compile
                else ""
            )
            + "\n"
            + format_table(rows, args.batch_size),
            flush=True,
        )
    if not args.no_plain and args.rounds:
        from bench.run import RunConfig

        harness, plain = [], []
        for r in range(args.rounds):
            beside = PlainBeside(PlainLoop(x, y, args.arch, dm.num_classes, args.batch_size, r))
            cfg = RunConfig(method="bp", arch=args.arch, seed=r, **{**base, "epochs": args.plain_epochs})
            harness += _epoch_seconds(cfg, [beside])
            plain += beside.epochs[1:]
        h, p = statistics.median(harness), statistics.median(plain)
        ratio = statistics.median(a / b for a, b in zip(harness, plain))
        print(
            f"\nharness (Lightning, bench.run) BP {args.arch}: {h:.3f} s/epoch  "
            f"(epochs measured: {', '.join(f'{t:.2f}' for t in harness)})"
        )
        print(
            f"plain PyTorch loop, epoch by epoch beside it: {p:.3f} s/epoch  "
            f"(epochs measured: {', '.join(f'{t:.2f}' for t in plain)})"
        )
        print(f"ratio harness/plain (median of the epoch pairs' ratios): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
