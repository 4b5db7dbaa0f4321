"""Regular expressions checked as Envoy will compile them: RE2 syntax and RE2 program size.

Envoy compiles every `safe_regex` with RE2 and refuses one whose program is larger than its
`re2.max_program_size.error_level` runtime value (100 unless the operator raised it). A regex that
Python's `re` accepts (`(?=x)`) or that is merely long (`[a-z]{1000}`) would pass the CRD's schema and
then make Envoy refuse (NACK) the whole RouteConfiguration holding it, so admission refuses it here,
with Envoy's own wording. google-re2 is the same RE2 library: its program sizes match Envoy's.
"""

from __future__ import annotations

import logging

import re2

# Envoy's default for runtime key re2.max_program_size.error_level.
ENVOY_MAX_PROGRAM_SIZE = 100
_max_program_size = ENVOY_MAX_PROGRAM_SIZE

# google-re2 logs every parse error through absl to stderr; the error is reported as a problem instead.
re2_options = re2.Options()
re2_options.log_errors = False
logging.getLogger("re2").setLevel(logging.CRITICAL)


def set_max_program_size(size: int) -> None:
    """Match an Envoy fleet whose runtime raises `re2.max_program_size.error_level`."""
    global _max_program_size
    if size < 1:
        raise ValueError("the RE2 program size limit must be positive")
    _max_program_size = size


def max_program_size() -> int:
    return _max_program_size


def re2_problem(pattern: str) -> str | None:
    """Why Envoy would refuse `pattern`, in words an operator can act on; None when it compiles."""
    try:
        compiled = re2.compile(pattern, options=re2_options)
    except re2.error as err:
        detail = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
        return f"not a valid RE2 regular expression (Envoy's syntax): {detail}"
    except (TypeError, ValueError) as err:
        return f"not a valid RE2 regular expression: {err}"
    if compiled.programsize > _max_program_size:
        return (f"RE2 program size of {compiled.programsize} > max program size of {_max_program_size} "
                f"(Envoy's re2.max_program_size.error_level); simplify the expression")
    return None


def check_re2(pattern: str) -> str:
    """A pydantic-style validator: return the pattern, or raise ValueError saying why Envoy refuses it."""
    problem = re2_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    return pattern


def envoy_regex_match(match):
    """For a model with `type` and `value` (path, header, query matches): a RegularExpression value must be
    one Envoy compiles."""
    if match.type == "RegularExpression":
        check_re2(match.value)
    return match
