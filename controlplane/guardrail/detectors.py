"""What counts as a secret: named detectors over text, built-in ones and the operator's own patterns.

Each detector has a name (what a block says, never what matched) and a regular expression; the card
detector also checks the Luhn digit, so that order numbers and timestamps of the right length pass.
The built-ins aim at things that are never legitimately sent to or returned by a tool: PEM private
keys, AWS access key ids and secret keys, well-known API token formats, and card numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_PATTERN_LENGTH = 1000


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    confirm: Callable[[str], bool] = lambda _: True  # a second look at each match

    def finds(self, text: str) -> bool:
        return any(self.confirm(m.group(0)) for m in self.pattern.finditer(text))


def luhn_valid(candidate: str) -> bool:
    """Whether the digits of `candidate` (separators ignored) are 13 to 19 long and pass the Luhn check."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


BUILT_IN: tuple[Detector, ...] = (
    Detector("private-key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    Detector("aws-access-key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])")),
    Detector("aws-secret-key", re.compile(
        r"(?i)aws.{0,20}?secret.{0,20}?[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])")),
    Detector("api-token", re.compile(
        r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20}"
        r"|xox[baprs]-[A-Za-z0-9-]{10,}|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35})")),
    Detector("card-number", re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"), luhn_valid),
)


def custom_detector(spec: str) -> Detector:
    """`NAME=REGEX` (a --pattern flag) as a detector; ValueError with a one-line reason otherwise."""
    name, sep, regex = spec.partition("=")
    if not sep or not NAME.match(name):
        raise ValueError(f"--pattern must be NAME=REGEX with NAME a lowercase DNS label, not {spec[:80]!r}")
    if not regex or len(regex) > MAX_PATTERN_LENGTH:
        raise ValueError(f"--pattern {name}: the regular expression must be 1 to {MAX_PATTERN_LENGTH} characters")
    try:
        return Detector(name, re.compile(regex))
    except re.error as error:
        raise ValueError(f"--pattern {name}: not a regular expression: {error}") from None


def detectors(custom: Iterable[str] = ()) -> tuple[Detector, ...]:
    """The built-ins, then the operator's patterns; a custom name may not shadow another."""
    found = list(BUILT_IN)
    for spec in custom:
        detector = custom_detector(spec)
        if any(d.name == detector.name for d in found):
            raise ValueError(f"--pattern {detector.name}: a detector of that name exists already")
        found.append(detector)
    return tuple(found)


def first_match(texts: Iterable[str], found: tuple[Detector, ...]) -> str | None:
    """The name of the first detector that matches any of the texts, or None."""
    texts = list(texts)
    return next((d.name for d in found if any(d.finds(t) for t in texts)), None)
