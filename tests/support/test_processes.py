"""The process and port helpers every harness shares, and the rule that they are the only ones."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from tests.support.envoy import free_ports
from tests.support.processes import REPO_ROOT, repo_env, spawn, terminate

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def test_terminate_kills_a_child_that_ignores_sigterm():
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"up\n"  # the handler is installed
        assert terminate(proc, timeout=0.5) == -9
    finally:
        proc.kill()
        proc.wait()
    assert terminate(proc) == -9 and terminate(None) is None  # twice, and nothing, are fine


def test_children_find_the_repo_modules_from_any_directory(tmp_path):
    assert repo_env({"PYTHONPATH": "/elsewhere"})["PYTHONPATH"] == os.pathsep.join([str(REPO_ROOT), "/elsewhere"])
    log = tmp_path / "child.log"
    proc = spawn([sys.executable, "-c", "import tests.support.mcp_server, controlplane.cli; print('ok')"],
                 log=log, cwd=tmp_path)
    assert proc.wait(timeout=60) == 0, log.read_text()
    assert log.read_text().strip() == "ok"


def test_free_ports_are_distinct():
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(1024 <= port < 65536 for port in ports)


def _helpers_defined_outside_support() -> list[str]:
    """Modules under tests/ (outside tests/support) or bench/ that launch Envoy or pick ports themselves."""
    found = []
    for root in (REPO_ROOT / "tests", REPO_ROOT / "bench"):
        for path in sorted(root.rglob("*.py")):
            if path.parent == REPO_ROOT / "tests" / "support":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "free_port" in node.name:
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} defines {node.name}")
                if isinstance(node, ast.ImportFrom) and node.module == "envoy":
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} finds the Envoy binary itself")
                if isinstance(node, ast.ClassDef) and node.name == "EnvoyProcess":
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} defines another EnvoyProcess")
    return found


def test_envoy_and_ports_come_from_tests_support_only():
    assert _helpers_defined_outside_support() == []
