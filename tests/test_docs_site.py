"""The documentation site builds in MkDocs' strict mode (a broken link, a missing heading, a page
left out of the nav or a docstring reference that does not resolve fails it), and every public
module of multicon has an API reference page."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("api_pages", ROOT / "tools" / "api_pages.py")
api_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_pages)
API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)
NEEDS_MKDOCS = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings")),
    reason="the docs extra is not installed (pip install -e '.[docs]'; make test installs it)",
)


def documented_modules(api_dir: Path) -> set[str]:
    """What the API pages render: the targets of their ``::: name`` directives."""
    return {name for page in api_dir.glob("*.md") for name in DIRECTIVE.findall(page.read_text())}


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    # no --quiet: it hides the warnings from the strict check too, and the build then passes
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
        + ["-d", str(site)],
        cwd=ROOT,  # mkdocs.yml names the griffe extension by a path from the repository root
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_every_public_module_has_an_api_page():
    missing = set(api_pages.modules(ROOT / "multicon")) - documented_modules(API)
    assert not missing, f"no API page for {sorted(missing)}: run python tools/api_pages.py"


def test_api_pages_and_nav_are_current():
    """docs/api/ and mkdocs.yml's API nav are what tools/api_pages.py writes: no page for a module
    that is gone, none missing from the nav."""
    wanted = api_pages.pages(ROOT / "multicon")
    found = {p.name: p.read_text() for p in API.glob("*.md") if p.name != "index.md"}
    config = (ROOT / "mkdocs.yml").read_text()
    current = found == wanted and config == api_pages.with_nav(config, ROOT / "multicon")
    assert current, "docs/api/ or mkdocs.yml's nav is stale: run python tools/api_pages.py"


def test_the_page_writer_covers_every_module(tmp_path):
    for rel in [
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/_private.py",
        "pkg/sub/__init__.py",
        "pkg/sub/b.py",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert api_pages.modules(tmp_path / "pkg") == ["pkg", "pkg.a", "pkg.sub", "pkg.sub.b"]
    assert api_pages.pages(tmp_path / "pkg") == {
        "a.md": "# pkg.a\n\n::: pkg.a\n",
        "sub.md": "# pkg.sub\n\n::: pkg.sub\n    options:\n      members: false\n"
        "\n## pkg.sub.b\n\n::: pkg.sub.b\n",
    }
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "sub.md").write_text("# pkg.sub\n\n::: pkg.sub\n")
    missing = set(api_pages.modules(tmp_path / "pkg")) - documented_modules(tmp_path / "api")
    assert missing == {"pkg", "pkg.a", "pkg.sub.b"}


@NEEDS_MKDOCS
def test_site_builds_strict(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "losses.html").exists()


@NEEDS_MKDOCS
@pytest.mark.parametrize(
    "index, error",
    [
        ("[gone](missing.md)", "missing.md"),
        ("[gone](page.md#nowhere)", "nowhere"),
        ("[out](../README.md)", "README.md"),
        ("no link; page.md is left out of the nav", "page.md"),
    ],
    ids=["missing-file", "missing-heading", "outside-docs", "not-in-nav"],
)
def test_the_site_config_fails_a_broken_link(tmp_path, index, error):
    """The repository's settings (INHERIT) on a two-page site: each kind of break fails strict."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(f"# Home\n\n{index}\n")
    (docs / "page.md").write_text("# Page\n\n## A heading\n")
    nav = "[index.md]" if "nav" in index else "[index.md, page.md]"
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {ROOT / 'mkdocs.yml'}\ndocs_dir: {docs}\nnav: {nav}\nplugins: [search]\n"
    )
    result = build(config, tmp_path / "site")
    assert result.returncode != 0 and error in result.stderr, result.stderr[-2000:]
