"""Turn a decoded YAML/JSON document into the resource model of its kind (stub: being written)."""

from __future__ import annotations

from typing import Any

from controlplane.api.base import Problem, Resource


class InvalidResource(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def parse_object(doc: Any, *, origin: str = "-", doc_index: int = 0) -> Resource | None:
    """Return the model for `doc`, None for kinds this project does not read; raise InvalidResource."""
    raise NotImplementedError
