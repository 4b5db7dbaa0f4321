"""A small asyncio client for the Kubernetes API: configuration from the official client, HTTP from aiohttp.

Why not the official client's own HTTP: it is synchronous (urllib3), and its watch helper hides the
wire details a robust watch loop needs (410 as a status or as an ERROR event, bookmarks, resuming).
`kubernetes_asyncio` would do, but it is not a dependency. So the official client's loaders decide
the host, credentials and CA (kubeconfig and context, or in-cluster), and this module speaks HTTP.

Credentials are re-read while running: projected service-account tokens expire (about hourly) and
are rewritten in place, and a kubeconfig `tokenFile` may be rotated the same way.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import yaml

log = logging.getLogger(__name__)

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


class ApiError(Exception):
    """A non-2xx answer, or an ERROR watch event, carrying the apiserver's `Status` fields."""

    def __init__(self, *, status: int, reason: str = "", message: str = ""):
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, *, status: int, body: Any) -> ApiError:
        """Build from a `Status` object when the body is one, else from whatever text came back."""
        if isinstance(body, Mapping):
            return cls(
                status=int(body.get("code") or status),
                reason=str(body.get("reason") or ""),
                message=str(body.get("message") or ""),
            )
        return cls(status=status, message=str(body or "")[:500])


class Credentials:
    """The `Authorization` header value, re-read every `refresh` seconds and after a 401."""

    def __init__(self, *, configuration: Any = None, token_file: str | None = None, refresh: float = 60.0):
        self._configuration = configuration
        self._token_file = token_file
        self._refresh = refresh
        self._value: str | None = None
        self._read_at = float("-inf")

    def header(self) -> str | None:
        if time.monotonic() - self._read_at >= self._refresh:
            self._value = self._read()
            self._read_at = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        """Force a re-read on the next request: the apiserver just said the token is no good."""
        self._read_at = float("-inf")

    def _read(self) -> str | None:
        if self._token_file:
            try:
                with open(self._token_file, encoding="utf-8") as handle:
                    return f"Bearer {handle.read().strip()}"
            except OSError as error:
                log.warning("cannot read token file %s: %s", self._token_file, error)
                return self._value
        configuration = self._configuration
        if configuration is None:
            return None
        hook = getattr(configuration, "refresh_api_key_hook", None)
        if hook is not None:
            hook(configuration)  # the official loaders' refresh: in-cluster token, exec plugins
        keys = getattr(configuration, "api_key", None) or {}
        return keys.get("BearerToken") or keys.get("authorization")


class KubeApi:
    """JSON requests and streaming watches against one apiserver. Create and use inside one event loop."""

    def __init__(
        self,
        *,
        host: str,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        request_timeout: float = 30.0,
    ):
        self.host = host.rstrip("/")
        self._credentials = credentials or Credentials()
        self._ssl = ssl_context if ssl_context is not None else True
        self._server_hostname = server_hostname
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_configuration(
        cls, configuration: Any, *, token_file: str | None = None, token_refresh: float = 60.0
    ) -> KubeApi:
        """From a `kubernetes.client.Configuration` filled by one of the official loaders."""
        return cls(
            host=configuration.host,
            credentials=Credentials(
                configuration=configuration, token_file=token_file, refresh=token_refresh
            ),
            ssl_context=_ssl_context(configuration) if configuration.host.startswith("https") else None,
            server_hostname=getattr(configuration, "tls_server_name", None) or None,
        )

    @classmethod
    def from_kubeconfig(
        cls, *, path: str | None = None, context: str | None = None, token_refresh: float = 60.0
    ) -> KubeApi:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        return cls.from_configuration(
            configuration, token_file=_kubeconfig_token_file(path, context), token_refresh=token_refresh
        )

    @classmethod
    def from_in_cluster(
        cls,
        *,
        token_path: str = IN_CLUSTER_TOKEN,
        ca_path: str = IN_CLUSTER_CA,
        environ: Mapping[str, str] | None = None,
        token_refresh: float = 60.0,
    ) -> KubeApi:
        from kubernetes import client
        from kubernetes.config.incluster_config import InClusterConfigLoader

        configuration = client.Configuration()
        loader = InClusterConfigLoader(
            token_filename=token_path, cert_filename=ca_path, environ=dict(environ or os.environ)
        )
        loader.load_and_set(configuration)
        return cls.from_configuration(configuration, token_file=token_path, token_refresh=token_refresh)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One JSON request; raises ApiError for any non-2xx answer."""
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        data = None if body is None else json.dumps(body).encode()
        response = await self._send(
            method, path, params=params, data=data, content_type=content_type, timeout=timeout
        )
        async with response:
            if response.status >= 300:
                raise await _error_of(response)
            return await response.json(content_type=None)

    async def watch(
        self, path: str, *, params: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The decoded lines of a watch stream, until the server ends it or the connection drops."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._request_timeout, sock_read=read_timeout
        )
        response = await self._send("GET", path, params=params, data=None, content_type=None, timeout=timeout)
        async with response:
            if response.status != 200:
                raise await _error_of(response)
            buffer = bytearray()
            async for chunk in response.content.iter_any():
                buffer.extend(chunk)
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(bytes(buffer))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        content_type: str | None,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send once; after a 401, re-read the credentials and send once more."""
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if content_type and data is not None:
                headers["Content-Type"] = content_type
            if authorization := self._credentials.header():
                headers["Authorization"] = authorization
            response = await self._ensure_session().request(
                method,
                self.host + path,
                params=params,
                data=data,
                headers=headers,
                timeout=timeout,
                server_hostname=self._server_hostname,
            )
            if response.status != 401 or attempt == 2:
                return response
            response.release()
            self._credentials.invalidate()
        raise AssertionError("unreachable")

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self._session


async def _error_of(response: aiohttp.ClientResponse) -> ApiError:
    text = await response.text()
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    return ApiError.from_status(status=response.status, body=body)


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the kubeconfig says: its CA (or the system's), its client certificate, or no verification."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def _kubeconfig_token_file(path: str | None, context: str | None) -> str | None:
    """The active user's `tokenFile`, so that it can be re-read (the official loader reads it once)."""
    path = os.path.expanduser(path or os.environ.get("KUBECONFIG") or "~/.kube/config")
    if os.pathsep in path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    context_name = context or document.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or []}
    users = {u.get("name"): u.get("user") or {} for u in document.get("users") or []}
    token_file = users.get(contexts.get(context_name, {}).get("user"), {}).get("tokenFile")
    if not token_file:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(token_file))
