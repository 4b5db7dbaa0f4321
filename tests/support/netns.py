"""Pods as Linux network namespaces on one machine, for the local mesh (e2e/local/).

Why namespaces: transparent capture is iptables rules in the pod's own network namespace, and the
proxy's UID is what they exclude; only a real namespace per pod shows that an agent which knows nothing
of the mesh is captured, and that the tool's app port cannot be reached around its sidecar.

Layout: one "node" namespace holding a bridge (`br0`, the subnet's first address: the control plane
listens there), and one namespace per pod with `eth0` (a veth whose other end is on the bridge), its
own address and a default route through the node, and `/etc/netns/<pod>/hosts` for Service names
(`ip netns exec` mounts it over /etc/hosts). Nothing is created in the root namespace but the
`/etc/netns/<pod>` directories. `close()` removes everything, whatever state setup stopped in.

    with LocalPods("acp1234", subnet="10.251.7") as pods:
        agent = pods.add("agent", hosts={"10.251.8.10": ["weather.tools.svc.cluster.local"]})
        pods.run(agent, ["iptables-restore"], input=script)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

NETNS_ETC = Path("/etc/netns")


class NamespacesUnavailable(RuntimeError):
    """This machine or user cannot create network namespaces (the message says why)."""


def why_unavailable() -> str | None:
    """None when `ip netns`, `iptables-restore` and `setpriv` work here; else the reason, for a skip."""
    for tool in ("ip", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            package = {"ip": "iproute2", "iptables-restore": "iptables", "setpriv": "util-linux"}[tool]
            return f"{tool} is not installed (Debian: apt-get install -y {package})"
    probe = f"acp-probe-{time.monotonic_ns() % 100000}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if added.returncode != 0:
        return f"`ip netns add` is not permitted here: {added.stderr.strip()}"
    try:
        nat = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-S"],
                             capture_output=True, text=True, check=False)
        if nat.returncode != 0:
            return f"iptables nat does not work in a network namespace here: {nat.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass(frozen=True)
class Pod:
    name: str  # the namespace's name
    address: str


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NamespacesUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


class LocalPods:
    """The node namespace and its pods; a context manager whose exit removes all of them."""

    def __init__(self, prefix: str, *, subnet: str):
        self.prefix, self.subnet = prefix, subnet  # subnet: the first three octets of a private /24
        self.node = Pod(f"{prefix}-node", f"{subnet}.1")
        self.pods: list[Pod] = []
        self._namespaces: list[str] = []
        self._etc_dirs: list[Path] = []
        self._made_netns_etc = False

    def __enter__(self) -> Self:
        return self.open()

    def open(self) -> Self:
        """The node namespace and its bridge; on any failure, whatever was made is removed."""
        try:
            self._add_namespace(self.node.name)
            _ip("-n", self.node.name, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.node.name, "addr", "add", f"{self.node.address}/24", "dev", "br0")
            _ip("-n", self.node.name, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add(self, role: str, *, hosts: dict[str, list[str]] | None = None) -> Pod:
        """A pod namespace on the bridge, with the next address and `hosts` as its /etc/hosts."""
        pod = Pod(f"{self.prefix}-{role}", f"{self.subnet}.{len(self.pods) + 2}")
        self._add_namespace(pod.name)
        veth = f"v{self.prefix[-6:]}{len(self.pods)}"  # the node's end; interface names are <= 15 bytes
        _ip("-n", self.node.name, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.name)
        _ip("-n", self.node.name, "link", "set", veth, "master", "br0", "up")
        _ip("-n", pod.name, "addr", "add", f"{pod.address}/24", "dev", "eth0")
        _ip("-n", pod.name, "link", "set", "eth0", "up")
        _ip("-n", pod.name, "route", "add", "default", "via", self.node.address)
        self._write_hosts(pod, hosts or {})
        self.pods.append(pod)
        return pod

    def _write_hosts(self, pod: Pod, hosts: dict[str, list[str]]) -> None:
        if not NETNS_ETC.exists():
            NETNS_ETC.mkdir(parents=True)
            self._made_netns_etc = True
        etc = NETNS_ETC / pod.name
        etc.mkdir()
        self._etc_dirs.append(etc)
        lines = ["127.0.0.1 localhost", *(f"{address} {' '.join(names)}" for address, names in hosts.items())]
        (etc / "hosts").write_text("\n".join(lines) + "\n")

    @staticmethod
    def exec_argv(pod: Pod, argv: list[str], *, uid: int | None = None) -> list[str]:
        """`argv` inside the pod's namespace (and /etc/netns files), as `uid` if given."""
        prefix = ["ip", "netns", "exec", pod.name]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return prefix + argv

    def run(self, pod: Pod, argv: list[str], *, uid: int | None = None, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.exec_argv(pod, argv, uid=uid), input=input, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def wait_for_port(self, pod: Pod, host: str, port: int, *, proc: subprocess.Popen | None = None,
                      what: str, timeout: float = 30) -> None:
        """Until a TCP connect from inside the pod to host:port succeeds (the probe runs as root)."""
        probe = [sys.executable, "-c", f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            if self.run(pod, probe, timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        raise TimeoutError(f"{what} did not listen on {host}:{port} in {pod.name} within {timeout}s")

    def close(self) -> None:
        """Kill what still runs in the namespaces (by pid), delete them (their veths and the bridge go with
        them) and the /etc/netns directories."""
        for name in reversed(self._namespaces):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                subprocess.run(["kill", "-KILL", pid], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self._namespaces.clear()
        for etc in self._etc_dirs:
            shutil.rmtree(etc, ignore_errors=True)
        self._etc_dirs.clear()
        if self._made_netns_etc and not any(NETNS_ETC.iterdir()):
            NETNS_ETC.rmdir()
            self._made_netns_etc = False


def existing_namespaces() -> set[str]:
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip()}

