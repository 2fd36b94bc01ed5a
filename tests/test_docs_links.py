"""Every relative link in README.md and docs/ points at a file that exists (and a heading, for
links with a #fragment), so moving or renaming a page cannot leave dangling references."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_the_checker_finds_a_missing_file_and_heading(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Title: `x` (y)\n\n[ok](b.md#large-batches-for-the-gpu) [self](#title-x-y)\n"
        "[gone](missing.md) [bad](b.md#nowhere) [web](https://example.com/x.md)\n"
        "```bash\n[in code](not-a-link.md)\n```\n"
    )
    (tmp_path / "b.md").write_text("## Large batches (for the GPU)\n")
    assert broken_links(tmp_path / "a.md") == [
        "missing.md (no such file)",
        "b.md#nowhere (no such heading)",
    ]
