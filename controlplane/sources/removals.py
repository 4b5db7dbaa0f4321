"""What removing an object from a directory does to access, in words for the operator's log.

Removing an XAccessPolicy is never neutral: where other policies remain on a target it revokes what it
granted there, and where it was the last one the target has no policy left, which means all traffic is
allowed. The log line says which, naming the policy and each target.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.api.base import Resource, ResourceKey


def removal_effect(obj: Resource, remaining: Mapping[ResourceKey, Resource]) -> str:
    """'' for kinds other than XAccessPolicy; else what its removal revokes or opens, per target."""
    if obj.kind != "XAccessPolicy":
        return ""
    still_covered = {_target_key(p, t) for p in remaining.values() if p.kind == "XAccessPolicy"
                     for t in p.spec.target_refs}
    external = getattr(obj.spec.action, "value", obj.spec.action) == "ExternalAuth"
    effects = []
    for target in obj.spec.target_refs:
        key = _target_key(obj, target)
        where = f"{key[0]} {key[1]}/{key[2]}"
        if key not in still_covered:
            effects.append(f"opened access to {where} (no policy left there: all traffic allowed)")
        elif external:
            effects.append(f"dropped its external authorization on {where}")
        else:
            effects.append(f"revoked its grants on {where}")
    return "; ".join(effects)


def _target_key(policy: Resource, target) -> tuple[str, str, str]:
    return target.kind, policy.namespace, target.name
