"""The documentation as a reader gets it: every relative link of README.md and docs/*.md (and of the speed notes in
results/perf/) opens an existing file, every ``#anchor`` names a heading of its page (GitHub's slugs), the README
stays a short front page, and nothing shipped points to the private sibling folder outside the repository
(``OUTSIDE``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "results" / "perf").glob("*.md"))]
SHIPPED = ["README.md", "docs", "methods", "bench", "sweeps", "reports"]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans (a link or heading in code is not one)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text (links to their text, code and emphasis marks dropped),
    lowercased, every character but letters, digits, ``_``, ``-`` and spaces removed, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The relative link targets of a page (no URL with a scheme such as https: or mailto:)."""
    return [u for u in LINK.findall(_prose(page.read_text())) if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", u)]


def broken(page: Path) -> list[str]:
    bad = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    return bad


def test_the_slugs_are_githubs():
    assert slug("6. Forward gradient (`fg_*`, `local_learning`)") == "6-forward-gradient-fg_-local_learning"
    assert slug("5. SPELA and SPELA(O) (`spela`, `spela_o`)") == "5-spela-and-spelao-spela-spela_o"
    assert slug("What happens when ...") == "what-happens-when-"
    assert slug("Fair on any dataset: tuned settings and `--tune`") == "fair-on-any-dataset-tuned-settings-and---tune"
    assert slug("See [the docs](docs/x.md) now") == "see-the-docs-now"


def test_the_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Two words\n\n```\n# not a heading\n[x](gone.md)\n```\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#two-words) [self](#here) `[code](nowhere.md)` [web](https://example.org/x)\n\n## Here\n"
        "[missing](gone.md) [bad anchor](a.md#not-a-heading) [no self](#nowhere)\n"
    )
    assert not broken(tmp_path / "a.md")  # links and headings inside code do not count
    assert broken(page) == [
        "gone.md (no such file)",
        "a.md#not-a-heading (no heading #not-a-heading in a.md)",
        "#nowhere (no heading #nowhere in b.md)",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert not broken(page), f"links of {page.relative_to(ROOT)} that resolve to nothing: {broken(page)}"


def test_the_docs_the_readme_promises_exist_and_are_linked():
    readme = links(ROOT / "README.md")
    assert len(readme) >= 10  # the link pattern finds the README's links
    for name in ("running", "sweeps", "protocol", "speed", "extending", "methods", "measurements", "reports"):
        assert (ROOT / "docs" / f"{name}.md").is_file()
        assert any(t.partition("#")[0] == f"docs/{name}.md" for t in readme), f"README does not link docs/{name}.md"


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    text = "\n".join(lines)
    assert "make bench" in text and "make test" in text  # the two commands of a fresh machine


OUTSIDE = "/".join(("..", "shared"))
"""A folder beside the checkout that users do not have (spelled in parts, so this file does not name it either)."""


def test_nothing_shipped_points_to_shared():
    files = []
    for top in SHIPPED:
        p = ROOT / top
        files += [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    files = [f for f in files if "__pycache__" not in f.parts and "out" not in f.relative_to(ROOT).parts[:2]]
    assert len(files) > 50
    hits = [str(f.relative_to(ROOT)) for f in files if OUTSIDE.encode() in f.read_bytes()]
    assert not hits, f"shipped files that point to {OUTSIDE} (outside the repository): {hits}"
