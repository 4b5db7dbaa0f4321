"""Untrusted text made safe to log and print: control characters escaped, length capped.

Names, values and paths in a problem come from the file being read; a newline in one of them must not
forge a log line, and a megabyte-long value must not make a megabyte-long one.
"""

from __future__ import annotations

import dataclasses

from controlplane.api.base import Problem

MAX_CHARS = 300


def printable(text: str, limit: int = MAX_CHARS) -> str:
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def printable_problem(problem: Problem) -> Problem:
    return dataclasses.replace(problem, **{f.name: printable(getattr(problem, f.name))
                                          for f in dataclasses.fields(problem) if f.type in ("str", str)})
