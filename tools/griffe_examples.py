"""A griffe extension for the docs site: read a docstring's ``Example:`` as an Examples section.

The project's docstrings say ``Example:`` (singular), which griffe's Google parser renders as a
prose admonition, so a doctest's output such as ``[0.2, 0.8]`` reads as a Markdown link and the
strict build fails. Renaming the section here shows it as code without editing every module.
"""

import re

from griffe import Extension, Object

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(Extension):
    def on_instance(self, *, obj: Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
