"""Every failure is one line on stderr with a non-zero exit; the traceback only with --log-level debug."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from controlplane import cli
from controlplane.cli import main
from controlplane.sources.directory import DirectorySource
from tests.conftest import ROOT

QUICKSTART = str(ROOT / "examples" / "quickstart")


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def serve(tmp_path, *args) -> list[str]:
    return ["serve", "--state-dir", str(tmp_path / "state"), *args]


def test_a_missing_kubeconfig_is_a_usage_error(tmp_path, capsys):
    assert main(serve(tmp_path, "--kubeconfig", str(tmp_path / "nonexistent"))) == 2
    line = one_line(capsys)
    assert line.startswith(f"agentic-cp: kubeconfig {tmp_path / 'nonexistent'}: No such file")
    assert "--in-cluster" in line  # what to do instead


BROKEN_KUBECONFIGS = {
    "bad YAML": ("clusters: [\n  - {name: a\n", (), "is not valid YAML at line"),
    "unknown context": ("current-context: a\ncontexts: [{name: a, context: {cluster: a}}]\nclusters: [{name: a}]\n",
                        ("--context", "prod"), "has no context 'prod' (known: a)"),
    "no current-context": ("contexts: [{name: a, context: {cluster: a}}]\nclusters: [{name: a}]\n", (),
                           "sets no current-context; pass --context NAME"),
}


@pytest.mark.parametrize("command", ["serve", "analyze"])
@pytest.mark.parametrize("case", sorted(BROKEN_KUBECONFIGS))
def test_a_broken_kubeconfig_is_one_line_with_the_kubectl_hint_exit_2(tmp_path, capsys, command, case):
    text, extra, says = BROKEN_KUBECONFIGS[case]
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    argv = serve(tmp_path, "--kubeconfig", str(path), *extra) if command == "serve" else \
        ["analyze", "--kubeconfig", str(path), *extra]
    assert main(argv) == 2
    line = one_line(capsys)
    assert says in line and f"kubectl config get-contexts --kubeconfig {path}" in line, line


@pytest.mark.parametrize("flag", ["--xds-address", "--admin-address"])
def test_an_address_in_use_fails_fast_naming_it(tmp_path, capsys, flag):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        other = "--admin-address" if flag == "--xds-address" else "--xds-address"
        assert main(serve(tmp_path, "--config", QUICKSTART, flag, taken, other, "127.0.0.1:0")) == 1
    line = one_line(capsys)
    assert line.startswith(f"agentic-cp: {flag} {taken}: cannot listen there (Address already in use)")


def test_a_closed_pipe_ends_the_command_quietly():
    """`agentic-cp graph ... | head`: the reader goes away before the graph is printed."""
    proc = subprocess.Popen([sys.executable, "-m", "controlplane.cli", "graph", "--config", QUICKSTART],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b""


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(self):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(DirectorySource, "load", broken)
    assert main(["graph", "--config", QUICKSTART]) == 1
    assert one_line(capsys) == ("agentic-cp: graph failed: RuntimeError: the disk went away "
                                "(rerun with --log-level debug for the traceback)")
    with pytest.raises(RuntimeError, match="the disk went away"):
        main(["graph", "--config", QUICKSTART, "--log-level", "debug"])


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip().startswith("agentic-cp 0.")


def test_a_command_group_alone_prints_its_own_help(capsys):
    assert main(["identity"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: agentic-cp identity") and "issue" in err


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_flag_has_help_and_shows_its_default():
    parsers = list(_parsers(cli._parser()))
    assert len(parsers) >= 9
    silent = [f"{p.prog} {a.dest}" for p in parsers for a in p._actions if not a.help]
    assert not silent, f"flags without help: {silent}"
    serve_help = next(p for p in parsers if p.prog == "agentic-cp serve").format_help()
    assert "(default: 127.0.0.1:15010)" in " ".join(serve_help.split())


@pytest.mark.parametrize("command", [["proxy-status"], ["proxy-config", "gateway~a~b"]])
def test_an_unreachable_admin_api_is_one_line(capsys, command):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    assert main([*command, "--admin-address", address]) == 1
    line = one_line(capsys)
    assert line.startswith(f"agentic-cp: cannot reach the admin API at {address} (")
    assert line.endswith("is serve running? (--admin-address)")
