"""SVID files on disk: what Envoy (file SDS), curl and test clients read.

Every file is written to a temporary name in the same directory and then renamed over the target, so a
reader (Envoy watching the directory, a client starting up) sees either the old file or the new one, never
a half-written PEM. The key is created with mode 0600 before any byte of it is written.

The pair (cert, key) is still two files, so a reader can catch a new cert with the old key between the two
renames (upstream kube-agentic-networking issue #101). We write the key first, then the cert, then the
bundle; Envoy's file SDS re-reads the pair on every rename and keeps its last good pair when they do not
match, so the window heals on the next rename.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["BUNDLE_FILE", "CERT_FILE", "KEY_FILE", "Credential", "IdentityFiles", "atomic_write", "write_identity"]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
BUNDLE_FILE = "bundle.pem"


class Credential(Protocol):
    """What ``write_identity`` needs of an issued identity (``ca.IssuedIdentity`` is one). A protocol, so
    that this module does not import ``ca`` back: ``ca`` writes its own files through ``atomic_write``."""

    @property
    def key_pem(self) -> bytes: ...

    @property
    def chain_pem(self) -> bytes: ...


@dataclass(frozen=True)
class IdentityFiles:
    """Where one identity was written."""

    cert: Path
    key: Path
    bundle: Path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` in one rename; the file has ``mode`` from its first byte on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_identity(out_dir: Path, identity: Credential, bundle_pem: bytes) -> IdentityFiles:
    """Write ``cert.pem`` (leaf + chain), ``key.pem`` (0600) and ``bundle.pem`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = atomic_write(out / KEY_FILE, identity.key_pem, mode=0o600)
    cert = atomic_write(out / CERT_FILE, identity.chain_pem)
    bundle = atomic_write(out / BUNDLE_FILE, bundle_pem)
    return IdentityFiles(cert=cert, key=key, bundle=bundle)
