"""`agentic-cp identity request`: an SVID from a running control plane, over its identity API.

Why beside `identity issue`: `issue` needs the CA's state dir (an operator on the control plane's
machine); `request` needs only a credential the control plane already signed (a bootstrap credential, or
the previous SVID to renew) and the xDS address, so an agent or a CLI anywhere can get its own SVID. It
can only ever get one for the identity that credential proves.
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from pathlib import Path

import grpc

from controlplane.commands.common import CommandFailed, UsageError
from controlplane.identity.certificate_client import request_certificate
from controlplane.identity.files import BUNDLE_FILE, CERT_FILE, KEY_FILE, write_identity

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(value: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``1d``: the lifetime asked for (the server bounds it)."""
    match = _DURATION.match(value.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: want a positive duration like 90s, 30m, 12h or 1d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def add_parser(actions) -> None:
    q = actions.add_parser("request", help="get an SVID from a running serve, proving identity with mTLS")
    q.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="serve's xDS address")
    q.add_argument("--credentials", required=True, metavar="DIR",
                   help=f"{CERT_FILE}, {KEY_FILE} and {BUNDLE_FILE} proving who we are (a bootstrap credential "
                        "or the previous SVID)")
    q.add_argument("--out", required=True, metavar="DIR", help="where the new cert.pem, key.pem, bundle.pem go")
    q.add_argument("--ttl", type=duration, metavar="DURATION",
                   help="the lifetime asked for, e.g. 1h (default: the server's)")
    q.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the TLS connection")
    q.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    credentials = Path(args.credentials)
    missing = [name for name in (CERT_FILE, KEY_FILE, BUNDLE_FILE) if not (credentials / name).is_file()]
    if missing:
        raise UsageError(f"--credentials {credentials}: missing {', '.join(missing)}")
    try:
        received = request_certificate(args.xds_address, credentials, ttl=args.ttl, timeout=args.timeout)
    except grpc.FutureTimeoutError:
        raise CommandFailed(f"no TLS connection to {args.xds_address} (is serve running there, and does it "
                            f"accept the certificate in {credentials}?)") from None
    except grpc.RpcError as err:
        raise CommandFailed(f"{args.xds_address} refused: {err.code().name}: {err.details()}") from None
    try:
        files = write_identity(Path(args.out), received, received.bundle_pem)
    except OSError as err:
        raise CommandFailed(f"cannot write --out {args.out}: {err.strerror or err}") from None
    print(f"received {received.spiffe_id}, valid until {received.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC:")
    for path in (files.cert, files.key, files.bundle):
        print(f"  {path}")
    return 0
