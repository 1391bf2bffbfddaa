"""``python -m bench doctor`` on a CPU: the table's rows for two cheap rules, and a failing rule is a failed row."""

from __future__ import annotations

import pytest

from bench import doctor


def _table(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = lines.index(doctor.HEADER) + 1
    return [ln.split() for ln in lines[start:] if ln.strip() and not ln[0].isdigit()]


def test_doctor_runs_two_rules_in_every_cpu_mode(fmnist_root, tmp_path, capsys):
    code = doctor.main(
        ["--methods", "bp,fa", "--steps", "16", "--modes", "eager,workers,ddp", "--threads", "1"]
        + ["--data-dir", str(fmnist_root), "--runs-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    rows = _table(out)
    assert code == 0, out
    got = [(r[0], r[1], " ".join(r[2:4]) if r[2] == "2" else r[2]) for r in rows]
    assert got == [
        ("bp", "cpu", "eager"),
        ("fa", "cpu", "eager"),
        ("bp", "cpu", "2 workers"),
        ("fa", "cpu", "2 workers"),
        ("(all)", "cpu", "ddp"),
    ]
    for r in rows[:4]:
        assert r[-1] == "ok" and float(r[-3]) > 0 and float(r[-2]) > 0  # steps/s and peak MB measured
    assert "skipped: no CUDA device here" in " ".join(rows[4])
    assert "4 ok, 0 failed, 1 skipped" in out


def test_a_failing_rule_is_a_failed_row_and_the_exit_status(fmnist_root, tmp_path, capsys, monkeypatch):
    from methods.fa import FA

    def broken(self, x, y):
        raise RuntimeError("Expected all tensors to be on the same device\nsecond line")

    monkeypatch.setattr(FA, "compute_updates", broken)
    code = doctor.main(
        ["--methods", "bp,fa", "--steps", "8", "--modes", "eager", "--threads", "1"]
        + ["--data-dir", str(fmnist_root), "--runs-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    rows = {r[0]: " ".join(r) for r in _table(out)}
    assert code == 1
    assert rows["bp"].endswith("ok")
    assert "failed:" in rows["fa"] and "same device" in rows["fa"] and "second line" not in out
    assert "failed: fa (eager)" in out


def test_doctor_refuses_unknown_modes(capsys):
    assert doctor.main(["--modes", "eager,fast"]) == 2
    assert "--modes takes" in capsys.readouterr().out


@pytest.mark.parametrize("text,expected", [("a\nb", "a"), ("\n  x  \n", "x"), ("y" * 200, "y" * 157 + "...")])
def test_errors_are_one_line(text, expected):
    assert doctor.one_line(text) == expected
