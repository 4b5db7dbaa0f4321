"""Which policy made a proxy refuse its config (NACK), so that it alone is withheld.

Envoy refuses a whole RouteConfiguration when one part of it is bad, and keeps its last good one;
while the bad part stands, every later change to that route configuration (a revocation in another
policy included) would be refused with it. Admission rejects what it can foresee (RE2 syntax and
program size, CEL Envoy cannot run), and this module handles whatever still slips through: the
policies whose own text the error quotes (Envoy names the offending regex), or else the policies that
changed in the publish that built the refused version. Those are withheld (graph.withhold: fail
closed), the rest is published again, and the proxy ACKs a config that carries every other change.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.api.agentic import XAccessPolicy
from controlplane.api.base import ResourceKey

MIN_QUOTED = 4  # shorter strings would match error texts by chance


def culprits(error: str, policies: Iterable[XAccessPolicy], recent: set[ResourceKey]) -> set[ResourceKey]:
    """The policies to withhold for `error`: those it quotes, else those among `recent` (last changed)."""
    policies = list(policies)
    quoted = {p.key for p in policies if any(text in error for text in quotable(p))}
    return quoted or {p.key for p in policies if p.key in recent}


def quotable(policy: XAccessPolicy) -> set[str]:
    """Strings of a policy that Envoy may quote when it refuses them: regexes, CEL, header values."""
    texts = {f"{policy.namespace}/{policy.name}#"}  # the RBAC policy names we give its rules
    for rule in policy.spec.rules or []:
        auth = rule.authorization
        if auth is None:
            continue
        texts |= {m.value for m in (auth.paths or []) + (auth.headers or [])}
        if auth.cel is not None:
            texts.add(auth.cel.expression)
    return {t for t in texts if len(t) >= MIN_QUOTED}
