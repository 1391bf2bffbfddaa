"""The report as a reader gets it: every link and image of every committed index.md / index.html resolves; one
comparison table holds one budget; the report rebuilt from the committed records has the interval, vs-BP and
time-to-target tables and the accuracy-vs-compute figure; ``index.html`` renders in a real headless browser (every
table and image shown, no console error); ``report.tex`` compiles without a missing file or an oversized float."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SRC = re.compile(r"""(?:src|href)="([^"]+)\"""")


def _local_links(page: Path) -> list[str]:
    text = page.read_text()
    found = LINK.findall(text) if page.suffix == ".md" else SRC.findall(text)
    return [u for u in found if not re.match(r"^[a-z]+:", u) and not u.startswith("#")]


def _broken(page: Path) -> list[str]:
    return [u for u in _local_links(page) if not (page.parent / u.split("#")[0]).exists()]


def test_every_link_and_image_of_the_committed_reports_resolves():
    pages = [p for p in (ROOT / "results").rglob("index.*") if p.suffix in (".md", ".html")]
    pages += [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    assert any(p.name == "index.html" for p in pages), "no committed index.html"
    broken = {str(p.relative_to(ROOT)): b for p in pages if (b := _broken(p))}
    assert not broken, f"links that resolve to nothing: {broken}"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    from reports.build import build_report

    out = tmp_path_factory.mktemp("report")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        build_report(source="results/fashion_mnist", out=out)
    finally:
        os.chdir(cwd)
    return out


def _tables(md: str) -> list[list[list[str]]]:
    """Every pipe table of a markdown text, as rows of cells (header first)."""
    out, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            if not re.match(r"^\|[-:|]+\|$", line):
                cur.append([c.strip() for c in line.strip("|").split("|")])
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def test_rebuilt_report_holds_one_budget_per_table_with_intervals_and_tests(rebuilt):
    md = (rebuilt / "fashion_mnist.md").read_text()
    titles = re.findall(r"^### (.*)$", md, flags=re.M)
    assert titles and all(re.search(r", \d+ epochs?, ", t) for t in titles)  # every table names its one budget
    for table in _tables(md):
        assert "Epochs" not in table[0]  # one budget per table: no epochs column to mix
    head = _tables(md)[0][0]
    assert "95% CI" in head and "vs BP (pts)" in head
    for f in (rebuilt / "tables").glob("comparison*.md"):
        for table in _tables(f.read_text()):
            col = table[0].index("Epochs")
            assert len({r[col] for r in table[1:]}) == 1, f"{f.name} mixes epoch budgets"
    assert list((rebuilt / "tables").glob("time_to_target_*.md"))
    assert (rebuilt / "figures" / "acc_vs_compute_fashion_mnist.png").exists()
    index = (rebuilt / "index.md").read_text()
    assert "| not run" not in index  # not-run claims as counts per paper, not one row each (tables/claims.md has them)
    assert "Not run here:" in index
    assert not _broken(rebuilt / "index.md") and not _broken(rebuilt / "index.html")


def test_report_tex_compiles_without_missing_files_or_oversized_floats(rebuilt, tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("BENCH_REQUIRE_LATEX"):
            pytest.fail("pdflatex missing (install texlive-latex-base texlive-latex-recommended)")
        pytest.skip("pdflatex missing")
    work = tmp_path / "tex"
    shutil.copytree(rebuilt, work)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout
    assert proc.returncode == 0, log[-3000:]
    assert "Float too large" not in log and "not found" not in log


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHECK = """
<script>
window.addEventListener('load', function(){
  var imgs = Array.from(document.images);
  var bad = imgs.filter(function(i){ return !(i.complete && i.naturalWidth > 0); }).map(function(i){ return i.src; });
  var tables = document.querySelectorAll('table');
  var empty = Array.from(tables).filter(function(t){ return t.rows.length < 2; }).length;
  var th = document.querySelector('th'); if (th) { th.click(); }
  var out = document.createElement('pre'); out.id = 'bench-check';
  out.textContent = JSON.stringify({images: imgs.length, broken: bad, tables: tables.length, empty: empty,
    errors: window.__errors || []});
  document.body.appendChild(out);
});
</script>
"""
CATCH = (
    "<script>window.__errors=[];"
    "window.addEventListener('error',function(e){window.__errors.push(String(e.message))});</script>"
)


def test_index_html_renders_in_a_real_browser(rebuilt, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("BENCH_REQUIRE_BROWSER"):
            pytest.fail("no chromium for the browser test (Debian: apt-get install chromium)")
        pytest.skip("no chromium")
    page = rebuilt / "index.html"
    text = page.read_text()
    probe = rebuilt / "probe.html"  # the page as shipped, plus a checker that reads what the browser shows
    probe.write_text(text.replace("<head>", "<head>" + CATCH, 1).replace("</body>", CHECK + "</body>", 1))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--enable-logging=stderr",
        "--v=0",
    ]
    proc = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="bench-check">(.*?)</pre>', proc.stdout, flags=re.S)
    assert m, f"the page did not load: {proc.stderr[-2000:]}"
    check = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["tables"] >= 5 and check["empty"] == 0, check
    assert check["images"] >= 3 and not check["broken"], check
    assert not check["errors"], check
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and "probe.html" in ln]
    assert not console, console
    shot = tmp_path / "index.png"
    subprocess.run(
        [browser, *flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=180,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
