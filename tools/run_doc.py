"""Run every ```python block of a Markdown page, in order, in one namespace.

python tools/run_doc.py docs/custom-generators.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: str | Path) -> list[str]:
    """The ```python code blocks of a Markdown file."""
    return BLOCK.findall(Path(path).read_text())


def run(path: str | Path) -> dict:
    """Execute the page's code blocks; returns the namespace they ran in."""
    namespace: dict = {"__name__": "__doc__"}
    blocks = python_blocks(path)
    if not blocks:
        raise ValueError(f"{path} has no ```python blocks")
    for i, code in enumerate(blocks):
        exec(compile(code, f"{path}[block {i}]", "exec"), namespace)
    return namespace


if __name__ == "__main__":
    for page in sys.argv[1:]:
        run(page)
