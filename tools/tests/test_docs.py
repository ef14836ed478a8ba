"""The documentation's relative links point at files that exist, and the README stays a door
(two screens of text, the rest in docs/)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def _links(page: Path) -> list[tuple[int, str]]:
    out, fence = [], False
    for n, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
        if not fence:
            out += [(n, t) for t in re.findall(r"\]\(([^)\s]+)\)", line) if not re.match(r"https?:|mailto:|#", t)]
    return out


def test_relative_links_resolve():
    broken = [
        f"{page.relative_to(ROOT)}:{n}: {target}"
        for page in PAGES
        for n, target in _links(page)
        if not (page.parent / target.split("#")[0]).exists()
    ]
    assert broken == []


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines: move detail into docs/"
