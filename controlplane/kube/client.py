"""The Kubernetes API client: the official `kubernetes_asyncio` client, configured once, its errors in our words.

Why this module: every writer and the watch loop take a `KubeApi`, which holds one official `ApiClient`
(configured by the official loaders from a kubeconfig and context, or in-cluster) and the typed APIs
built on it (`Apis`). `call` is the one place where an official `ApiException` becomes our `ApiError`
(with the apiserver's `Status` reason and message), and where a 401 makes the token be read again once.

Answers come back as the JSON the apiserver sent (dicts), not as the generated models: the watch
loop hands objects on to our own models, which read fields the generated ones do not know (CRDs),
and the writers read back only a few fields.

Credentials are re-read while running: projected service-account tokens expire (about hourly) and
are rewritten in place, and a kubeconfig `tokenFile` may be rotated the same way. The official
loaders read a kubeconfig's `tokenFile` once and the in-cluster token on a timer only, so a
`TokenFile` hook (the official `refresh_api_key_hook`) re-reads it on a timer and after a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp  # only for the exception types the official client lets through
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

log = logging.getLogger(__name__)

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
# What a dropped, refused or truncated connection looks like through the official client.
TRANSIENT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError)


def is_transient(error: BaseException) -> bool:
    """Whether waiting can cure it: a refused or dropped connection, a timeout, 429 or a 5xx answer.
    401/403, 404 and 409 are answers that stay the same until someone changes something."""
    if isinstance(error, ApiError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError)


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

    @classmethod
    def from_exception(cls, error: ApiException) -> ApiError:
        """The official exception: a body holding a `Status`, or (watch errors) `reason: message` alone."""
        status = int(error.status or 0)
        if error.body:
            try:
                return cls.from_status(status=status, body=json.loads(error.body))
            except ValueError:
                return cls.from_status(status=status, body=error.body)
        reason, _, message = str(error.reason or "").partition(": ")
        return cls(status=status, reason=reason, message=message)


class KubeconfigError(ValueError):
    """A kubeconfig that cannot name a cluster: missing, not YAML, no such context, no current-context."""


def check_kubeconfig(path: str | None, context: str | None) -> None:
    """Fail now, in one line with the command that shows what there is, on a kubeconfig the official
    loader would refuse later with a traceback (or, for bad YAML, with a parser error of its own)."""
    shown = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
    hint = f"see `kubectl config get-contexts --kubeconfig {shown}`"
    if os.pathsep in shown:  # a $KUBECONFIG list: the official loader merges it
        return
    try:
        with open(os.path.expanduser(shown), encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise KubeconfigError(f"kubeconfig {shown}: {error.strerror or error}; name a kubeconfig file "
                              "(kubectl config view --raw), or use --in-cluster inside a pod") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KubeconfigError(f"kubeconfig {shown} is not valid YAML{where}; {hint}") from None
    if not isinstance(document, dict):
        raise KubeconfigError(f"kubeconfig {shown} is not a kubeconfig (no mapping of clusters, users, "
                              f"contexts); {hint}")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or [] if isinstance(c, dict)}
    name = context or document.get("current-context")
    if not name:
        raise KubeconfigError(f"kubeconfig {shown} sets no current-context; pass --context NAME ({hint})")
    if name not in contexts:
        known = ", ".join(sorted(str(c) for c in contexts)) or "none"
        raise KubeconfigError(f"kubeconfig {shown} has no context {name!r} (known: {known}); {hint}")
    clusters = {c.get("name") for c in document.get("clusters") or [] if isinstance(c, dict)}
    if contexts[name].get("cluster") not in clusters:
        raise KubeconfigError(f"kubeconfig {shown}: context {name!r} names cluster "
                              f"{contexts[name].get('cluster')!r}, which the file does not define; {hint}")
    try:
        k8s_config.list_kube_config_contexts(config_file=path)
    except k8s_config.ConfigException as error:
        raise KubeconfigError(f"kubeconfig {shown}: {error}; {hint}") from None


class TokenFile:
    """A bearer token read from a file every `refresh` seconds and after a 401, as the official hook."""

    def __init__(self, path: str, *, refresh: float = 60.0):
        self.path = path
        self._refresh = refresh
        self._read_at = float("-inf")

    def invalidate(self) -> None:
        """Force a re-read on the next request: the apiserver just said the token is no good."""
        self._read_at = float("-inf")

    def __call__(self, configuration: k8s.Configuration) -> None:
        if time.monotonic() - self._read_at < self._refresh:
            return
        self._read_at = time.monotonic()
        try:
            with open(self.path, encoding="utf-8") as handle:
                configuration.api_key["BearerToken"] = f"Bearer {handle.read().strip()}"
        except OSError as error:
            log.warning("cannot read token file %s: %s", self.path, error)


class DictApiClient(k8s.ApiClient):
    """The official ApiClient, answering with the JSON the apiserver sent instead of generated models."""

    def deserialize(self, response: Any, response_type: Any) -> Any:
        try:
            return json.loads(response.data)
        except ValueError:
            return response.data


@dataclass(frozen=True)
class Apis:
    """The official typed APIs this project calls, on one ApiClient."""

    client: DictApiClient
    core: k8s.CoreV1Api
    apps: k8s.AppsV1Api
    discovery: k8s.DiscoveryV1Api
    coordination: k8s.CoordinationV1Api
    custom: k8s.CustomObjectsApi
    admission: k8s.AdmissionregistrationV1Api

    @classmethod
    def on(cls, client: DictApiClient) -> Apis:
        return cls(client, k8s.CoreV1Api(client), k8s.AppsV1Api(client), k8s.DiscoveryV1Api(client),
                   k8s.CoordinationV1Api(client), k8s.CustomObjectsApi(client), k8s.AdmissionregistrationV1Api(client))


Configure = Callable[[k8s.Configuration], Awaitable[Any]]


class KubeApi:
    """One apiserver through the official client. Create anywhere; use and close inside one event loop."""

    def __init__(self, *, host: str | None = None, configure: Configure | None = None,
                 token_file: str | None = None, token_refresh: float = 60.0, request_timeout: float = 30.0):
        self._host = host
        self._configure = configure
        self._token = TokenFile(token_file, refresh=token_refresh) if token_file else None
        self.request_timeout = request_timeout
        self._apis: Apis | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_kubeconfig(
        cls, *, path: str | None = None, context: str | None = None, token_refresh: float = 60.0
    ) -> KubeApi:
        """From a kubeconfig file and context (default: `$KUBECONFIG`, then `~/.kube/config`).

        A missing file or context fails now (KubeconfigError), as a bad flag should; the credentials are
        loaded on first use, because the official loader is a coroutine (exec plugins, refreshes)."""
        check_kubeconfig(path, context)

        async def configure(configuration: k8s.Configuration) -> None:
            await k8s_config.load_kube_config(config_file=path, context=context,
                                              client_configuration=configuration, persist_config=False)

        return cls(configure=configure, token_file=_kubeconfig_token_file(path, context), token_refresh=token_refresh)

    @classmethod
    def from_in_cluster(
        cls,
        *,
        token_path: str = IN_CLUSTER_TOKEN,
        ca_path: str = IN_CLUSTER_CA,
        environ: Mapping[str, str] | None = None,
        token_refresh: float = 60.0,
    ) -> KubeApi:
        """From the pod's service account and `KUBERNETES_SERVICE_HOST`/`_PORT`; fails now if not in a pod."""
        loader = InClusterConfigLoader(token_filename=token_path, cert_filename=ca_path,
                                       try_refresh_token=False, environ=dict(environ or os.environ))
        loader.load_and_set(k8s.Configuration())  # validate at once: a missing token or host is a setup error

        async def configure(configuration: k8s.Configuration) -> None:
            loader.load_and_set(configuration)

        return cls(configure=configure, token_file=token_path, token_refresh=token_refresh)

    async def apis(self) -> Apis:
        """The typed APIs, configured on first use (the kubeconfig loader is a coroutine)."""
        async with self._lock:
            if self._apis is None:
                configuration = k8s.Configuration(host=self._host)
                if self._configure is not None:
                    await self._configure(configuration)
                configuration.client_side_validation = False  # the apiserver validates; we only read back
                if self._token is not None:
                    configuration.refresh_api_key_hook = self._token
                    configuration.api_key.setdefault("BearerToken", "")
                self._apis = Apis.on(DictApiClient(configuration))
            return self._apis

    async def call(self, method: Callable[[Apis], Callable[..., Awaitable[Any]]], *args: Any, **kwargs: Any) -> Any:
        """`method(apis)(*args, **kwargs)`, one official call: ApiError for any non-2xx answer, after one
        retry on 401 with a fresh token. E.g. `call(lambda k: k.core.read_namespaced_secret, name, ns)`."""
        apis = await self.apis()
        for attempt in (1, 2):
            try:
                return await method(apis)(*args, **kwargs)
            except ApiException as error:
                if error.status == 401 and attempt == 1 and self._token is not None:
                    self._token.invalidate()
                    continue
                raise self._translated(error) from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Around a watch stream: the official exceptions it raises, as ApiError."""
        try:
            yield
        except ApiException as error:
            raise self._translated(error) from None

    def _translated(self, error: ApiException) -> ApiError:
        if error.status == 401 and self._token is not None:
            self._token.invalidate()
        return ApiError.from_exception(error)

    async def close(self) -> None:
        if self._apis is not None:
            await self._apis.client.close()
            self._apis = None


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
