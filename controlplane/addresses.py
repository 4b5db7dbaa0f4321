"""`HOST:PORT` strings, as flags and options give them (the CLI's --xds-address, the provisioner's xDS service).

A leaf of its own, importing nothing from the project, so that both the CLI and `kube/` can parse an
address without one reaching into the other (or into translation) for it.
"""

from __future__ import annotations

__all__ = ["split_host_port"]


def split_host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 hosts may be bracketed) as (host, port); ValueError for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)
