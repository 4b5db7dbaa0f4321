"""The capture rules: Istio's chains and ports, the proxy's UID and loopback never captured, include and
exclude lists honoured, and the order that makes exclusions win (iptables stops at the first match)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from controlplane.cli import main as cli
from controlplane.translate.capture import CaptureSettings, commands, nat_rules, restore_script


def rule_text(settings: CaptureSettings | None = None) -> list[str]:
    return [" ".join(rule) for rule in nat_rules(settings or CaptureSettings())]


def position(rules: list[str], rule: str) -> int:
    assert rule in rules, f"{rule!r} not in {rules}"
    return rules.index(rule)


def test_istio_chains_redirect_outbound_to_15001_and_inbound_to_15006():
    rules = rule_text()
    assert rules[:4] == ["-N ISTIO_INBOUND", "-N ISTIO_REDIRECT", "-N ISTIO_IN_REDIRECT", "-N ISTIO_OUTPUT"]
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in rules
    assert "-A PREROUTING -p tcp -j ISTIO_INBOUND" in rules and "-A OUTPUT -p tcp -j ISTIO_OUTPUT" in rules
    assert rules[-1] == "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"  # everything not excluded above is captured
    assert rules[-2] == "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN"  # explicit proxy use, the app itself


def test_the_proxys_own_connections_are_never_captured_outbound():
    rules = rule_text(CaptureSettings(proxy_uid=1500, proxy_gid=1600))
    uid_return = position(rules, "-A ISTIO_OUTPUT -m owner --uid-owner 1500 -j RETURN")
    gid_return = position(rules, "-A ISTIO_OUTPUT -m owner --gid-owner 1600 -j RETURN")
    capture_all = position(rules, "-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
    assert uid_return < capture_all and gid_return < capture_all
    assert not any("1337" in rule for rule in rules)


def test_sidecar_and_health_ports_are_not_captured_inbound_and_everything_else_is():
    rules = rule_text()
    redirect_all = position(rules, "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
    for port in (15006, 15020, 15021, 15090):
        assert position(rules, f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN") < redirect_all


def test_only_the_listed_inbound_ports_are_captured():
    rules = rule_text(CaptureSettings(inbound_ports=("8080", "9090")))
    inbound = [r for r in rules if r.startswith("-A ISTIO_INBOUND")]
    assert inbound == ["-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
                       "-A ISTIO_INBOUND -p tcp --dport 9090 -j ISTIO_IN_REDIRECT"]


def test_no_inbound_ports_means_no_inbound_capture():
    rules = rule_text(CaptureSettings(inbound_ports=()))
    assert not any(r.startswith(("-A PREROUTING", "-A ISTIO_INBOUND")) for r in rules)


def test_outbound_cidrs_and_exclusions():
    rules = rule_text(CaptureSettings(outbound_cidrs=("10.96.0.0/12", "10.244.0.0/16"),
                                      excluded_outbound_cidrs=("10.96.0.10/32",), excluded_outbound_ports=(5432,)))
    assert "-A ISTIO_OUTPUT -j ISTIO_REDIRECT" not in rules  # only the listed ranges are captured
    captured = [position(rules, f"-A ISTIO_OUTPUT -d {c} -j ISTIO_REDIRECT") for c in ("10.96.0.0/12", "10.244.0.0/16")]
    excluded = position(rules, "-A ISTIO_OUTPUT -d 10.96.0.10/32 -j RETURN")
    port = position(rules, "-A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN")
    assert excluded < min(captured) and port < min(captured)


@pytest.mark.parametrize("settings", [{"outbound_cidrs": ("10.0.0/33",)}, {"excluded_outbound_cidrs": ("x",)},
                                      {"inbound_ports": ("70000",)}, {"excluded_outbound_ports": (0,)}])
def test_bad_ports_and_ranges_are_refused(settings):
    with pytest.raises(ValueError):
        CaptureSettings(**settings)


def test_restore_script_and_commands_hold_the_same_rules():
    script = restore_script().splitlines()
    assert script[0] == "* nat" and script[-1] == "COMMIT"
    assert script[1:-1] == rule_text()
    assert [c[3:] for c in commands()] == nat_rules() and all(c[:3] == ["iptables", "-t", "nat"] for c in commands())


def test_cli_prints_the_restore_script(capsys):
    assert cli(["capture-rules", "--proxy-uid", "1500", "--exclude-outbound-ports", "5432"]) == 0
    assert capsys.readouterr().out == restore_script(CaptureSettings(proxy_uid=1500, excluded_outbound_ports=(5432,)))


def test_cli_refuses_a_bad_range(capsys):
    assert cli(["capture-rules", "--outbound-ip-ranges", "10.0.0/33"]) == 2
    assert "10.0.0/33" in capsys.readouterr().err


def test_iptables_restore_accepts_the_script():
    """`iptables-restore --test` parses the script (needs the iptables package and CAP_NET_ADMIN)."""
    restore = shutil.which("iptables-restore")
    if restore is None:
        pytest.skip("iptables-restore is not installed (Debian: apt-get install -y iptables)")
    result = subprocess.run([restore, "--test"], input=restore_script(), capture_output=True, text=True, check=False)
    if "Permission denied" in result.stderr or "you must be root" in result.stderr.lower():
        pytest.skip(f"iptables-restore --test is not permitted here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
