"""The iptables rules that capture a pod's TCP into its sidecar, as Istio's `istio-iptables` writes them.

Why Istio's rules, chain names and ports: users (and their runbooks, `iptables -t nat -S` in a debug
container) know them. Pure data, no I/O: the init container, `agentic-cp capture-rules` and
`e2e/local/` apply the same text with `iptables-restore`.

What they do, in the pod's network namespace (nat table):
- PREROUTING -> ISTIO_INBOUND: TCP arriving for the pod is redirected to the inbound side (15006),
  except the excluded ports (the sidecar's own inbound port, which peers' sidecars dial directly, and
  Istio's health/telemetry ports). So the app's port is reachable only through the sidecar.
- OUTPUT -> ISTIO_OUTPUT: TCP the pod's processes open is redirected to the outbound side (15001),
  except connections from the proxy's own UID/GID (so the sidecar's own upstream connections are not
  captured again), loopback traffic (the app talking to itself, or to 127.0.0.1:15001 as an explicit
  proxy), and the excluded ports and CIDRs. Locally generated packets are redirected to 127.0.0.1, so
  the outbound listener can stay on loopback.
- Loopback traffic from the proxy to a non-loopback address of the pod (the pod calling itself through
  its own IP) goes to the inbound side, as in Istio.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT = 15006, 15001
PROXY_UID = PROXY_GID = 1337
ALL = "*"
# Not captured inbound: 15006 (peers' sidecars dial it directly; redirecting it to itself is a no-op),
# 15020/15021/15090 (Istio's merged metrics, health and Envoy stats ports, probed from outside the mesh).
# The admin (15000) and the outbound side (15001) listen on loopback only, so a connection from
# another pod to them is captured into 15006 and meets mTLS there.
DEFAULT_EXCLUDED_INBOUND_PORTS = (15006, 15020, 15021, 15090)

INBOUND, REDIRECT, IN_REDIRECT, OUTPUT = "ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"
LOOPBACK = "127.0.0.1/32"
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6/32"  # Istio's source address for inbound passthrough


@dataclass(frozen=True)
class CaptureSettings:
    """What `istio-iptables` takes as flags (`-p -z -u -g -b -d -i -x -o`); `*` means every port or address."""

    outbound_port: int = OUTBOUND_CAPTURE_PORT
    inbound_port: int = INBOUND_CAPTURE_PORT
    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_GID
    inbound_ports: tuple[str, ...] = (ALL,)  # ports captured inbound: `*` or port numbers; () captures none
    excluded_inbound_ports: tuple[int, ...] = DEFAULT_EXCLUDED_INBOUND_PORTS
    outbound_cidrs: tuple[str, ...] = (ALL,)  # destinations captured outbound: `*` or CIDRs; () none
    excluded_outbound_cidrs: tuple[str, ...] = ()
    excluded_outbound_ports: tuple[int, ...] = ()

    def __post_init__(self):
        for cidr in (*self.outbound_cidrs, *self.excluded_outbound_cidrs):
            if cidr != ALL:
                _ipv4_network(cidr)
        for port in (*self.inbound_ports, *self.excluded_inbound_ports, *self.excluded_outbound_ports):
            if str(port) != ALL and not 0 < int(port) < 65536:
                raise ValueError(f"{port} is not a TCP port")


def _ipv4_network(cidr: str) -> None:
    try:
        ipaddress.IPv4Network(cidr)  # iptables (not ip6tables) rules: IPv4 only
    except ValueError as err:
        raise ValueError(f"{cidr!r} is not an IPv4 CIDR: {err}") from None


def nat_rules(settings: CaptureSettings = CaptureSettings()) -> list[list[str]]:
    """The nat table's rules as `iptables -t nat` arguments, in the order they must be applied."""
    chains = [["-N", chain] for chain in (INBOUND, REDIRECT, IN_REDIRECT, OUTPUT)]
    redirects = [["-A", REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(settings.outbound_port)],
                 ["-A", IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(settings.inbound_port)]]
    return chains + redirects + _inbound(settings) + _outbound(settings)


def _inbound(settings: CaptureSettings) -> list[list[str]]:
    if not settings.inbound_ports:
        return []
    rules = [["-A", "PREROUTING", "-p", "tcp", "-j", INBOUND]]
    if ALL in settings.inbound_ports:
        rules += [["-A", INBOUND, "-p", "tcp", "--dport", str(port), "-j", "RETURN"]
                  for port in settings.excluded_inbound_ports]
        return rules + [["-A", INBOUND, "-p", "tcp", "-j", IN_REDIRECT]]
    return rules + [["-A", INBOUND, "-p", "tcp", "--dport", str(port), "-j", IN_REDIRECT]
                    for port in settings.inbound_ports]


def _outbound(settings: CaptureSettings) -> list[list[str]]:
    rules = [["-A", "OUTPUT", "-p", "tcp", "-j", OUTPUT]]
    rules += [["-A", OUTPUT, "-p", "tcp", "--dport", str(port), "-j", "RETURN"]
              for port in settings.excluded_outbound_ports]
    rules.append(["-A", OUTPUT, "-o", "lo", "-s", INBOUND_PASSTHROUGH_SOURCE, "-j", "RETURN"])
    for match in (["--uid-owner", str(settings.proxy_uid)], ["--gid-owner", str(settings.proxy_gid)]):
        rules += [["-A", OUTPUT, "!", "-d", LOOPBACK, "-o", "lo", "-m", "owner", *match, "-j", IN_REDIRECT],
                  ["-A", OUTPUT, "-o", "lo", "-m", "owner", "!", *match, "-j", "RETURN"],
                  ["-A", OUTPUT, "-m", "owner", *match, "-j", "RETURN"]]
    rules.append(["-A", OUTPUT, "-d", LOOPBACK, "-j", "RETURN"])
    rules += [["-A", OUTPUT, "-d", cidr, "-j", "RETURN"] for cidr in settings.excluded_outbound_cidrs]
    if ALL in settings.outbound_cidrs:
        return rules + [["-A", OUTPUT, "-j", REDIRECT]]
    return rules + [["-A", OUTPUT, "-d", cidr, "-j", REDIRECT] for cidr in settings.outbound_cidrs]


def restore_script(settings: CaptureSettings = CaptureSettings()) -> str:
    """The rules as `iptables-restore` input (applied atomically: all of them or none)."""
    lines = ["* nat", *(" ".join(rule) for rule in nat_rules(settings)), "COMMIT"]  # no token holds a space
    return "\n".join(lines) + "\n"


def commands(settings: CaptureSettings = CaptureSettings()) -> list[list[str]]:
    """The rules as `iptables` command lines, one per rule (for reading, or where restore is unavailable)."""
    return [["iptables", "-t", "nat", *rule] for rule in nat_rules(settings)]
