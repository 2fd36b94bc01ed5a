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
API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)
NEEDS_MKDOCS = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings")),
    reason="the docs extra is not installed (pip install -e '.[docs]'; make test installs it)",
)


def public_modules(package: Path) -> set[str]:
    """Dotted names of the package's modules and subpackages, found on disk (nothing imported:
    modules that need optional packages such as triton count too), none with a ``_`` name."""
    names = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            names.add(".".join(parts))
    return names


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
    missing = public_modules(ROOT / "multicon") - documented_modules(API)
    assert not missing, f"add a page under docs/api/ and to mkdocs.yml's nav for {sorted(missing)}"


def test_api_pages_name_only_modules_that_exist():
    modules = public_modules(ROOT / "multicon") | {"multicon"}
    stale = documented_modules(API) - modules
    assert not stale, f"docs/api/ renders modules that no longer exist: {sorted(stale)}"


def test_the_module_check_finds_a_module_without_a_page(tmp_path):
    for rel in ["pkg/__init__.py", "pkg/a.py", "pkg/_private.py", "pkg/sub/__init__.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "pkg.md").write_text("# pkg\n\n::: pkg\n\n## pkg.a\n\n::: pkg.a\n")
    assert public_modules(tmp_path / "pkg") == {"pkg", "pkg.a", "pkg.sub"}
    assert public_modules(tmp_path / "pkg") - documented_modules(tmp_path / "api") == {"pkg.sub"}


@NEEDS_MKDOCS
def test_site_builds_strict(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "loss.html").exists()


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
