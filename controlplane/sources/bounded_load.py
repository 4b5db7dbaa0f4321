"""Untrusted YAML and JSON files to plain documents, within bounds, so that no file can stall the process.

Why bounds rather than only try/except: PyYAML shares the object an alias points to, so a 461-byte
"billion laughs" document composes at once and blows up later, when validation walks the shared
structure a billion times; and deep nesting ends in a RecursionError wherever the stack happens to run
out. So the composer counts, per document, the nodes it would hold once aliases are expanded and how
deep it nests, and stops at the first bound crossed, with a message naming the bound. Scanning and
parsing run in libyaml when it is installed (that is the slow part in pure Python); composition stays
in Python, where it can count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

try:
    from yaml._yaml import CParser as _Parser
except ImportError:  # no libyaml: the pure-Python parser, same events
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PyParser.__init__(self)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 4 * 2**20
    max_document_bytes: int = 2**20
    max_depth: int = 64
    max_document_nodes: int = 50_000  # aliases counted as expanded


class OverLimit(ValueError):
    """A file or document crossed one of the `Limits`; the message says which."""


def read_located_documents(path: Path, limits: Limits) -> list[tuple[int, Any]]:
    """(its first line, 1-based; the document) for each document of one file (a JSON `...List` gives its
    items, all at line 1); raises on anything unreadable."""
    text = _read_text(path, limits.max_file_bytes)
    if path.suffix == ".json":
        return [(1, doc) for doc in _json_documents(text, limits)]
    loader = _BoundedLoader(text, limits)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            docs.append((node.start_mark.line + 1, loader.construct_document(node)))
        return docs
    finally:
        loader.dispose()


def _read_text(path: Path, max_bytes: int) -> str:
    size = path.stat().st_size
    with path.open("rb") as file:
        data = file.read(max_bytes + 1)  # the file may grow between stat and read
    if max(size, len(data)) > max_bytes:
        raise OverLimit(f"file is {max(size, len(data))} bytes, over the limit {max_bytes} (--max-file-bytes)")
    return data.decode("utf-8")


def _json_documents(text: str, limits: Limits) -> list[Any]:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise OverLimit(f"nested deeper than {limits.max_depth} levels") from None
    if len(text.encode("utf-8")) > limits.max_document_bytes and not _is_list(doc):
        raise OverLimit(f"document is over the limit of {limits.max_document_bytes} bytes")
    docs = (doc.get("items") or []) if _is_list(doc) else [doc]
    for item in docs if isinstance(docs, list) else [docs]:
        _check_tree(item, limits)
    return docs


def _is_list(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc["kind"].endswith("List")


def _check_tree(doc: Any, limits: Limits) -> None:
    """Depth and node count of a decoded JSON document, walked without recursion."""
    stack, nodes = [(doc, 1)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > limits.max_depth:
            raise OverLimit(f"nested deeper than {limits.max_depth} levels")
        if nodes > limits.max_document_nodes:
            raise OverLimit(f"document has over {limits.max_document_nodes} nodes")
        if isinstance(value, dict):
            nodes += len(value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


class _BoundedComposer(Composer):
    """PyYAML's composer, counting expanded nodes and depth per document."""

    def __init__(self, text: str, limits: Limits):
        super().__init__()
        self._text = text
        self._limits = limits
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}

    def compose_document(self):
        self._depth, self._nodes, self._sizes = 0, 0, {}
        node = super().compose_document()
        self._sizes = {}
        size = len(self._text[node.start_mark.index:node.end_mark.index].encode("utf-8"))
        if size > self._limits.max_document_bytes:
            raise OverLimit(f"document is {size} bytes, over the limit {self._limits.max_document_bytes}")
        return node

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise OverLimit("a YAML alias refers to a node that contains it (recursive document)")
            self._count(size)
            return node
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise OverLimit(f"nested deeper than {self._limits.max_depth} levels")
        before = self._count(1)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def _count(self, nodes: int) -> int:
        before = self._nodes
        self._nodes += nodes
        if self._nodes > self._limits.max_document_nodes:
            raise OverLimit(f"document expands to over {self._limits.max_document_nodes} nodes "
                            "(YAML aliases count once per use)")
        return before


class _BoundedLoader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
    """yaml.SafeLoader's behaviour (safe tags, same resolution) with a bounded composer."""

    def __init__(self, text: str, limits: Limits):
        _Parser.__init__(self, text)
        _BoundedComposer.__init__(self, text, limits)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
