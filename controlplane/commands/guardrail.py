"""`agentic-cp guardrail serve`: the reference guardrail service (controlplane/guardrail/), for a
GuardrailPolicy to point at. Detectors: the built-ins plus each `--pattern NAME=REGEX`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from controlplane.addresses import split_host_port
from controlplane.commands.common import CommandFailed, UsageError
from controlplane.guardrail.detectors import BUILT_IN, detectors
from controlplane.guardrail.server import serve


def add_parser(sub) -> None:
    p = sub.add_parser("guardrail", help="the reference guardrail service (Envoy ext_proc) for GuardrailPolicy")
    gsub = p.add_subparsers(metavar="ACTION", help="run `agentic-cp guardrail ACTION -h` for its flags")
    p.set_defaults(run=lambda _args: (p.print_help(), 2)[1])
    q = gsub.add_parser("serve", help="serve Envoy's ext_proc protocol, blocking secrets in tool arguments "
                                      "and results", description=__doc__)
    q.add_argument("--address", required=True, metavar="HOST:PORT", help="where to listen (plaintext gRPC)")
    q.add_argument("--pattern", action="append", default=[], metavar="NAME=REGEX",
                   help="another detector (repeatable); built-in: " + ", ".join(d.name for d in BUILT_IN))
    q.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        split_host_port(args.address)
        found = detectors(args.pattern)
    except ValueError as error:
        raise UsageError(str(error)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.address, found, ready=lambda port: print(f"guardrail listening on port {port}",
                                                                         flush=True)))
    except OSError as error:
        raise CommandFailed(str(error)) from None
    return 0
