"""What every command shares: its two failures, loading a config into a graph, names on the command line.

Why here: the exit codes are a contract (2: the command line is wrong, or names something that does
not exist; 1: the input was fine but the command could not do its work, or said no), and a reference
error always names the nearest existing object, so a typo costs one rerun.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from controlplane.api.base import ResourceKey
from controlplane.graph.model import AuthorizationGraph
from controlplane.sources.directory import DirectorySource


class UsageError(Exception):
    """The command line is wrong or names something that does not exist: exit 2."""


class CommandFailed(Exception):
    """The input was fine but the command could not do its work (e.g. a directory is not writable): exit 1."""


def nearest(value: str, choices: Iterable[str]) -> str | None:
    """The closest choice, if close enough to be a typo. For NAMESPACE/NAME each part is compared on its
    own, so a shared namespace does not make two different names look alike."""
    best = max(((_likeness(value, choice), choice) for choice in sorted(set(choices))), default=(0.0, None))
    return best[1] if best[0] >= 0.7 else None


def _likeness(a: str, b: str) -> float:
    return min(difflib.SequenceMatcher(None, x, y).ratio() for x, y in zip(a.split("/"), b.split("/"))) \
        if a.count("/") == b.count("/") else difflib.SequenceMatcher(None, a, b).ratio()


def require_object(graph: AuthorizationGraph, key: ResourceKey, flag: str) -> None:
    """A UsageError naming the nearest object of the kind when `key` is not in the graph."""
    if graph.get(key) is not None:
        return
    known = [obj.key.ref for obj in graph.of_kind(key.kind)]
    hint = nearest(key.ref, known)
    if hint:
        advice = f"did you mean {hint}?"
    elif known:
        advice = f"known: {', '.join(sorted(known)[:5])}"
    else:
        advice = f"the config has no {key.kind}"
    raise UsageError(f"{flag} {key.ref}: no such {key.kind}; {advice}")


def existing(paths: list[str]) -> list[Path]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    return [Path(p) for p in paths]


def ns_name(kind: str, value: str) -> ResourceKey:
    namespace, sep, name = value.partition("/")
    if not sep:
        namespace, name = "default", value
    return ResourceKey(kind, namespace, name)


def controllers(args: argparse.Namespace) -> tuple[str, ...]:
    """GatewayClass controllerNames this control plane answers for: the flags, else
    $AGENTIC_CP_GATEWAY_CLASS_CONTROLLER, else upstream's, so that upstream manifests work unchanged."""
    from controlplane.api.gateway import OUR_CONTROLLER

    if args.controller_name:
        return tuple(args.controller_name)
    return (os.environ.get("AGENTIC_CP_GATEWAY_CLASS_CONTROLLER") or OUR_CONTROLLER,)


def load_graph(args: argparse.Namespace) -> AuthorizationGraph:
    """The graph of `--config`; documents that do not parse are skipped with a warning on stderr."""
    source = DirectorySource(*existing(args.config))
    change = source.load()
    for problem in (p for ps in change.problems.values() for p in ps):
        print(f"warning: skipped: {problem}", file=sys.stderr)
    graph = AuthorizationGraph(trust_domain=args.trust_domain, controller_names=controllers(args))
    graph.apply(change)
    return graph


def controller_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller-name", action="append", default=[], metavar="NAME",
                   help="a GatewayClass controllerName to manage (repeatable; default: "
                        "$AGENTIC_CP_GATEWAY_CLASS_CONTROLLER, else upstream's)")
