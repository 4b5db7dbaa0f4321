"""Which listeners of a Gateway conflict: the one owner of this fact, for status and for translation alike.

Gateway API: listeners that share a port must agree on the protocol, and within one protocol on a port
each hostname may be claimed by one listener only. A conflicted listener is reported `Conflicted` and not
`Programmed` (graph/status.py), and translation (graph/view.py) leaves it out of the proxy's config, so
that what status says is what Envoy runs.
"""

from __future__ import annotations

from controlplane.api.gateway import Listener

PROTOCOL_CONFLICT, HOSTNAME_CONFLICT = "ProtocolConflict", "HostnameConflict"


def listener_conflicts(listeners: list[Listener]) -> dict[str, tuple[str, str]]:
    """Listener name -> (reason, message) for listeners that share a port incompatibly."""
    by_port: dict[int, list[Listener]] = {}
    for listener in listeners:
        by_port.setdefault(listener.port, []).append(listener)
    conflicts: dict[str, tuple[str, str]] = {}
    for port, group in by_port.items():
        if len({lst.protocol for lst in group}) > 1:
            for lst in group:
                conflicts[lst.name] = (PROTOCOL_CONFLICT, f"port {port} is used with several protocols")
            continue
        hosts: dict[str | None, list[str]] = {}
        for lst in group:
            hosts.setdefault(lst.hostname, []).append(lst.name)
        for hostname, names in hosts.items():
            if len(names) > 1:
                for name in names:
                    message = (f"listeners {', '.join(names)} share port {port} and hostname "
                               f"{hostname or '(any)'}")
                    conflicts[name] = (HOSTNAME_CONFLICT, message)
    return conflicts
