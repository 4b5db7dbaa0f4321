"""`agentic-cp proxy-status` and `proxy-config`: what each connected proxy has, from serve's admin API.

Why over the admin API (`/debug/syncz`, `/debug/config_dump`) and not a second xDS client: it is what
serve itself knows (versions sent and ACKed, the last NACK's message), it works through
`kubectl port-forward`, and it is guarded the same way (a bearer token, or loopback only).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from controlplane.commands.common import CommandFailed, UsageError, nearest
from controlplane.xds import resources as types

SHORT = {types.LISTENER: "LDS", types.ROUTE: "RDS", types.CLUSTER: "CDS", types.ENDPOINT: "EDS",
         types.SECRET: "SDS"}
KINDS = {"listeners": types.LISTENER, "routes": types.ROUTE, "clusters": types.CLUSTER,
         "endpoints": types.ENDPOINT, "secrets": types.SECRET}
SHOWN_STATUS = {"ERROR": "NACKED"}  # syncz says ERROR (CSDS's word) for a NACKed response


def add_parsers(sub) -> None:
    p = sub.add_parser("proxy-status", help="every connected proxy: identity, role, per-type sync state, "
                                            "versions, last NACK", description=__doc__)
    _admin_options(p)
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format")
    p.set_defaults(run=run_status)

    p = sub.add_parser("proxy-config", help="the config serve sends one proxy (private keys redacted)",
                       description=__doc__)
    p.add_argument("proxy", metavar="PROXY", help="a connected proxy's node id (see proxy-status) or node key")
    p.add_argument("kind", nargs="?", choices=tuple(KINDS), metavar="KIND",
                   help=f"only this type: {', '.join(KINDS)} (default: all)")
    _admin_options(p)
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    p.set_defaults(run=run_config)


def _admin_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin-address", default="127.0.0.1:15014", metavar="HOST:PORT",
                   help="serve's --admin-address")
    p.add_argument("--admin-token-file", metavar="FILE",
                   help="a file holding serve's admin bearer token (serve --admin-token-file)")


def run_status(args: argparse.Namespace) -> int:
    proxies = admin_get(args, "/debug/syncz")["proxies"]
    rows = [status_row(p) for p in sorted(proxies, key=lambda p: p["proxy"])]
    if args.output == "table":
        print("\n".join(status_table(rows)) if rows else "no proxy is connected")
    else:
        print(json.dumps(rows, indent=2) if args.output == "json" else yaml.safe_dump(rows, sort_keys=False).rstrip())
    return 0


def status_row(proxy: dict) -> dict:
    return {"proxy": proxy["proxy"], "role": proxy["proxy"].split("~", 1)[0], "identity": proxy["identity"],
            "variant": proxy["variant"],
            "types": [{"type": SHORT.get(t["type_url"], t["type_url"]),
                       "status": SHOWN_STATUS.get(t["status"], t["status"]),
                       "version_sent": t["version_sent"], "version_acked": t["version_acked"],
                       "last_nack_error": t["last_nack_error"]} for t in proxy["types"]]}


def status_table(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        lines.append(f"{row['proxy']}  role={row['role']}  identity={row['identity'] or '-'}  ({row['variant']})")
        lines.append(f"  {'TYPE':<5} {'STATUS':<9} {'SENT':<26} {'ACKED':<26} LAST NACK")
        for t in sorted(row["types"], key=lambda t: t["type"]):
            lines.append(f"  {t['type']:<5} {t['status']:<9} {t['version_sent'] or '-':<26} "
                         f"{t['version_acked'] or '-':<26} {t['last_nack_error'] or '-'}")
    return lines


def run_config(args: argparse.Namespace) -> int:
    dump = admin_get(args, "/debug/config_dump?" + urllib.parse.urlencode({"proxy": args.proxy}),
                     missing=lambda: _unknown_proxy(args))
    wanted = KINDS.get(args.kind) if args.kind else None
    out = {name: [_entry(r) for r in config["resources"]] for config in dump["configs"]
           for name, type_url in KINDS.items() if type_url == config["type_url"] and wanted in (None, type_url)}
    print(json.dumps(out, indent=2) if args.output == "json" else yaml.safe_dump(out, sort_keys=False).rstrip())
    return 0


def _entry(resource: dict) -> dict:
    return {key: resource[key] for key in ("name", "version", "resource", "error") if key in resource}


def _unknown_proxy(args: argparse.Namespace) -> UsageError:
    connected = [p["proxy"] for p in admin_get(args, "/debug/syncz")["proxies"]]
    hint = nearest(args.proxy, connected)
    advice = (f"did you mean {hint}?" if hint else
              f"connected: {', '.join(sorted(connected))}" if connected else "no proxy is connected")
    return UsageError(f"no proxy {args.proxy!r} on the control plane at {args.admin_address}; {advice}")


def admin_get(args: argparse.Namespace, path: str, *, missing=None) -> dict:
    """GET a JSON view of the admin API; every failure is one line saying what to do."""
    request = urllib.request.Request(f"http://{args.admin_address}{path}")
    token = _token(args.admin_token_file)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        if err.code == 404 and missing is not None:
            raise missing() from None
        raise CommandFailed(f"the admin API at {args.admin_address} answered {err.code} for {path.split('?')[0]}"
                            f"{_advice(err.code)}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CommandFailed(f"cannot reach the admin API at {args.admin_address} ({reason}); is serve running? "
                            "(--admin-address)") from None


def _advice(code: int) -> str:
    return {401: ": give the token with --admin-token-file",
            403: ": without a token it answers loopback clients only (kubectl port-forward, or --admin-token-file)",
            }.get(code, "")


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise CommandFailed(f"cannot read --admin-token-file {path}: {err.strerror or err}") from None
