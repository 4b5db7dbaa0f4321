"""Problems made safe to log and print: every text field escaped and capped (controlplane.logs.clip).

Names, values and paths in a problem come from the file being read; a newline in one of them must not
forge a log line, and a megabyte-long value must not make a megabyte-long one.
"""

from __future__ import annotations

import dataclasses

from controlplane.api.base import Problem
from controlplane.logs import clip

MAX_CHARS = 300


def printable_problem(problem: Problem) -> Problem:
    return dataclasses.replace(problem, **{f.name: clip(getattr(problem, f.name), MAX_CHARS)
                                          for f in dataclasses.fields(problem) if f.type in ("str", str)})
