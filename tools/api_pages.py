"""Write the API reference pages: one docs/api/NAME.md per top-level module or subpackage of
multicon (a ``::: multicon.NAME`` directive each, one per module for a subpackage), and the API
part of mkdocs.yml's nav. Run it after adding, renaming or removing a module:

    python tools/api_pages.py

tests/test_docs_site.py fails while the pages or the nav are not what this writes.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAV_START = "      # API pages: written by tools/api_pages.py\n"
NAV_END = "      # end of the API pages\n"


def modules(package: Path) -> list[str]:
    """Dotted names of the package's modules and subpackages, read from disk (nothing imported,
    so modules that need optional packages such as triton count too), none with a ``_`` name."""
    names = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            names.add(".".join(parts))
    return sorted(names)


def pages(package: Path) -> dict[str, str]:
    """File name under docs/api/ → its text, for each top-level module or subpackage."""
    names = modules(package)
    out = {}
    for top in (n for n in names if n.count(".") == 1):
        subs = [n for n in names if n.startswith(top + ".")]
        text = f"# {top}\n\n::: {top}\n"
        if subs:  # the package's docstring, then each of its modules under its own heading
            text += "    options:\n      members: false\n"
            text += "".join(f"\n## {sub}\n\n::: {sub}\n" for sub in subs)
        out[top.split(".", 1)[1] + ".md"] = text
    return out


def nav(package: Path) -> str:
    lines = [f"      - {package.name}.{Path(f).stem}: api/{f}\n" for f in sorted(pages(package))]
    return NAV_START + "      - api/index.md\n" + "".join(lines) + NAV_END


def with_nav(config: str, package: Path) -> str:
    """mkdocs.yml's text with the API part of its nav rewritten."""
    start, end = config.index(NAV_START), config.index(NAV_END) + len(NAV_END)
    return config[:start] + nav(package) + config[end:]


def main() -> None:
    package, api = ROOT / "multicon", ROOT / "docs" / "api"
    wanted = pages(package)
    for old in api.glob("*.md"):
        if old.name != "index.md" and old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        (api / name).write_text(text)
    config = ROOT / "mkdocs.yml"
    config.write_text(with_nav(config.read_text(), package))
    print(f"wrote {len(wanted)} pages under {api.relative_to(ROOT)}/ and mkdocs.yml's API nav")


if __name__ == "__main__":
    main()
