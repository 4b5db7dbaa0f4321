"""Files written to hurt a reader: deep nesting, alias bombs, oversize; shared by the tests and the bench."""

from __future__ import annotations

NESTED_YAML = "a: " + "[" * 500 + "]" * 500 + "\n"
NESTED_JSON = "[" * 1000 + "]" * 1000
# 461 bytes that expand to 9^9 nodes: PyYAML composes it at once, sharing every alias
BILLION_LAUGHS = "\n".join(["a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"] + [
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]" for i in range(8)]) + "\n"
RECURSIVE_ALIAS = "a: &a [*a]\n"


def oversize(megabytes: int) -> str:
    return "k: " + "x" * (megabytes * 2**20) + "\n"
