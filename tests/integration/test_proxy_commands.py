"""`proxy-status` and `proxy-config` against a running control plane and a real Envoy, through a NACK.

The NACK is provoked as in test_nack_isolation.py: the control plane admits a regex that Envoy's
default RE2 limit refuses, so Envoy NACKs the RouteConfiguration; the control plane withholds the
policy and republishes. proxy-status must show that NACK's message; proxy-config the routes Envoy has.
The admin API is guarded by a bearer token here, so the token option is exercised too.
"""

from __future__ import annotations

import json

import pytest

from controlplane.cli import main
from tests.integration.test_nack_isolation import BAD_POLICY
from tests.support.mesh import LocalMesh
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow
PROXY_PREFIX = "gateway~quickstart~agent-gateway"


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_proxy_status_and_config_through_a_nack(tmp_path, capsys):
    token = tmp_path / "admin-token"
    token.write_text("s3cret\n")
    serve_args = ("--max-regex-program-size", "1000", "--admin-token-file", str(token))
    with LocalMesh(tmp_path / "mesh", serve_args=serve_args) as mesh:
        admin = ["--admin-address", f"127.0.0.1:{mesh.ports.admin}"]
        authed = [*admin, "--admin-token-file", str(token)]

        code, _, err = cli(capsys, "proxy-status", *admin)
        assert code == 1 and "answered 401" in err and "--admin-token-file" in err

        code, out, _ = cli(capsys, "proxy-status", *authed, "-o", "json")
        rows = json.loads(out)
        assert code == 0 and len(rows) == 1
        proxy = rows[0]
        assert proxy["proxy"].startswith(PROXY_PREFIX) and proxy["role"] == "gateway"
        assert proxy["identity"] == "spiffe://cluster.local/ns/quickstart/sa/agent-gateway"
        assert {t["type"] for t in proxy["types"]} >= {"LDS", "RDS", "CDS"}

        (mesh.config / "40-bad-regex.yaml").write_text(BAD_POLICY)
        wait_until(lambda: "RE2 program size of 204" in mesh.log(), timeout=30, what="Envoy's NACK")

        def nacked_rds() -> dict | None:
            main(["proxy-status", *authed, "-o", "json"])
            types = json.loads(capsys.readouterr().out)[0]["types"]
            rds = next(t for t in types if t["type"] == "RDS")
            return rds if rds["last_nack_error"] else None
        wait_until(lambda: nacked_rds() is not None, timeout=15, what="the NACK in proxy-status")
        assert "RE2 program size of 204" in nacked_rds()["last_nack_error"]

        code, table, _ = cli(capsys, "proxy-status", *authed)
        assert code == 0
        rds_line = next(line for line in table.splitlines() if line.strip().startswith("RDS"))
        assert "RE2 program size of 204" in rds_line
        with capsys.disabled():
            print(f"\nproxy-status after the NACK:\n{table}")  # the operator's view, in the test report

        code, out, _ = cli(capsys, "proxy-config", proxy["proxy"], "routes", *authed, "-o", "json")
        routes = json.loads(out)
        assert code == 0 and set(routes) == {"routes"}
        assert [r["name"] for r in routes["routes"]] == [f"route-{mesh.ports.gateway}"]
        assert "quickstart/everything-tool-grants#math-tools" in json.dumps(routes)

        code, out, _ = cli(capsys, "proxy-config", proxy["proxy"], "secrets", *authed)
        assert code == 0 and "PRIVATE KEY-----" not in out  # the admin API redacts keys

        code, _, err = cli(capsys, "proxy-config", proxy["proxy"][:-1] + "x", *authed)
        assert code == 2 and f"did you mean {proxy['proxy']}?" in err

        log = mesh.log()  # what serve said about all of this (serve_log.py)
        assert f"admin API on http://127.0.0.1:{mesh.ports.admin} " in log
        assert "loaded 12 objects: " in log and "; no problems" in log
        assert "change: upserted 1 (XAccessPolicy quickstart/header-gated)" in log
        assert f"published to {PROXY_PREFIX}" in log
