"""A whole mesh on this machine: the control plane, a real Envoy gateway, a real MCP server, agent identities.

Every part is the real program in its own process, as it runs in production: `agentic-cp serve` on a
copy of a config folder, Envoy started from `agentic-cp bootstrap`, the MCP test server, and
certificates from `agentic-cp identity issue`. Ports are picked free, so several meshes can coexist.
`make demo` and the end-to-end tests both use it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import yaml

from controlplane.cli import main as cli
from controlplane.translate.bootstrap import ENVOY_FLAGS
from tests.support.envoy import EnvoyProcess, free_port
from tests.support.mcp_client import RawMcpClient
from tests.support.processes import REPO_ROOT, spawn, terminate, wait_for_port, wait_until

QUICKSTART = REPO_ROOT / "examples" / "quickstart"
TRUST_DOMAIN = "cluster.local"


@dataclass
class Ports:
    mcp: int = field(default_factory=free_port)
    gateway: int = field(default_factory=free_port)
    xds: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)


class LocalMesh:
    """Start with `with LocalMesh(workdir) as mesh:`; `mesh.client("math-agent")` calls through the gateway."""

    def __init__(self, workdir: Path, *, config: Path = QUICKSTART, gateway: str = "quickstart/agent-gateway",
                 gateway_port: int = 10443, mcp_port: int = 3001, delta: bool = False,
                 serve_args: tuple[str, ...] = (), mcp_args: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.config = self.workdir / "config"
        self.state = self.workdir / "state"
        self.gateway = gateway
        self.delta = delta  # the gateway's Envoy uses incremental ADS (`bootstrap --delta`)
        self.serve_args = serve_args  # extra `agentic-cp serve` flags
        self.mcp_args = mcp_args  # extra `python -m tests.support.mcp_server` flags
        self.ports = Ports()
        self._source = config
        self._template_ports = {"gateway": gateway_port, "mcp": mcp_port}
        self.mcp_server: subprocess.Popen | None = None
        self.control_plane: subprocess.Popen | None = None
        self.envoy: EnvoyProcess | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._copy_config()
        self.mcp_server = self._spawn("mcp-server.log", [sys.executable, "-m", "tests.support.mcp_server",
                                                         "--port", str(self.ports.mcp),
                                                         "--tool-log", str(self.tool_log_path), *self.mcp_args])
        wait_for_port(self.ports.mcp, what="MCP server", proc=self.mcp_server)
        self.start_control_plane()
        bootstrap_dir = self.workdir / "gateway"
        self._cli("bootstrap", "--xds-address", f"127.0.0.1:{self.ports.xds}", "--state-dir", str(self.state),
                  "--gateway", self.gateway, "--out", str(bootstrap_dir), "--admin-port", "0",
                  *(["--delta"] if self.delta else []))
        self.envoy = EnvoyProcess.start(bootstrap_dir / "envoy.yaml", log_path=self.workdir / "envoy.log",
                                        extra_args=ENVOY_FLAGS)
        self.envoy.wait_ready(timeout=30)
        wait_for_port(self.ports.gateway, what="gateway listener")

    def start_control_plane(self) -> None:
        self.control_plane = self._spawn("control-plane.log", [
            sys.executable, "-m", "controlplane.cli", "serve", "--config", str(self.config),
            "--state-dir", str(self.state), "--trust-domain", TRUST_DOMAIN,
            "--xds-address", f"127.0.0.1:{self.ports.xds}", "--admin-address", f"127.0.0.1:{self.ports.admin}",
            *self.serve_args])
        wait_until(lambda: self.admin_status("/readyz") == 200, timeout=60, what="control plane /readyz",
                   proc=self.control_plane)

    def stop_control_plane(self) -> None:
        terminate(self.control_plane)
        self.control_plane = None

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
            self.envoy = None
        self.stop_control_plane()
        terminate(self.mcp_server)
        self.mcp_server = None

    # --- use -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports.gateway}/tools/mcp"

    @property
    def tool_log_path(self) -> Path:
        return self.workdir / "tools-run.jsonl"

    def tools_run(self) -> list[dict]:
        """Every tool call the MCP server executed, in order (its own record, not the gateway's)."""
        import json

        if not self.tool_log_path.exists():
            return []
        return [json.loads(line) for line in self.tool_log_path.read_text().splitlines() if line]

    def identity(self, agent: str, *, namespace: str = "quickstart") -> tuple[Path, Path]:
        out = self.workdir / "agents" / f"{namespace}-{agent}"
        if not (out / "cert.pem").exists():
            self._cli("identity", "issue", "--state-dir", str(self.state), "--spiffe-id",
                      f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{agent}", "--out", str(out))
        return out / "cert.pem", out / "key.pem"

    def client(self, agent: str | None, *, namespace: str = "quickstart", timeout: float = 10.0) -> RawMcpClient:
        cert = self.identity(agent, namespace=namespace) if agent else None
        return RawMcpClient(self.url, cert=cert, timeout=timeout)

    def edit(self, filename: str, old: str, new: str) -> None:
        """Change a config file in place (atomically), as an operator's editor would."""
        path = self.config / filename
        text = path.read_text()
        if old not in text:
            raise ValueError(f"{old!r} not in {path}")
        tmp = path.with_suffix(".tmp~")
        tmp.write_text(text.replace(old, new))
        tmp.replace(path)

    def admin_status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.admin}{path}", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    def admin_json(self, path: str):
        import json

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.admin}{path}", timeout=5) as response:
            return json.loads(response.read())

    def log(self, name: str = "control-plane.log") -> str:
        return (self.workdir / name).read_text(errors="replace")

    # --- internals -----------------------------------------------------------------------------------

    def _copy_config(self) -> None:
        """Copy the config, moving the Gateway's listener and the MCP server's endpoints to free ports."""
        shutil.copytree(self._source, self.config, dirs_exist_ok=True)
        for path in sorted(self.config.rglob("*.yaml")):
            docs = list(yaml.safe_load_all(path.read_text()))
            kinds = {d.get("kind") for d in docs if isinstance(d, dict)}
            if not kinds & {"Gateway", "EndpointSlice"}:
                continue
            for doc in docs:
                self._move_ports(doc)
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def _move_ports(self, doc) -> None:
        if not isinstance(doc, dict):
            return
        if doc.get("kind") == "Gateway":
            for listener in doc["spec"]["listeners"]:
                if listener["port"] == self._template_ports["gateway"]:
                    listener["port"] = self.ports.gateway
        if doc.get("kind") == "EndpointSlice":
            for port in doc.get("ports") or []:
                if port.get("port") == self._template_ports["mcp"]:
                    port["port"] = self.ports.mcp

    def _spawn(self, log_name: str, argv: list[str]) -> subprocess.Popen:
        return spawn(argv, log=self.workdir / log_name)

    def _cli(self, *args: str) -> None:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            code = cli(list(args))
        if code != 0:
            raise RuntimeError(f"agentic-cp {' '.join(args)} exited {code}")
