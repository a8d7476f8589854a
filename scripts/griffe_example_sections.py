"""A griffe extension for the API pages: read a Google ``Example:`` section as griffe's ``Examples:``.

visattn's docstrings head their doctests ``Example:`` (as Napoleon and the Google style guide allow); griffe
reads only the plural as an examples section and renders the singular as prose, where ``>>>`` lines and list
output (``[3, 5, 5]``) turn into quotes and broken cross-references.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"(?m)^(\s*)Example:[ \t]*$")


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headers to ``Examples:`` in every loaded docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: D102 - griffe's hook
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
