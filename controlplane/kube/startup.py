"""Start-up calls to an API server that may not be reachable yet: retried where the cause can pass.

Why: a control plane often starts before its API server answers (a cluster booting, a kubeconfig
pointing at a tunnel not yet up, an apiserver restarting). Refused connections, timeouts, 429 and 5xx
can pass, so they are retried with backoff, each attempt in one log line with the next delay, until
`give_up_after` seconds (None: forever). What cannot pass by waiting (401/403, a bad kubeconfig, a CA
Secret for another trust domain) is raised at once, so the operator sees it on the first line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from controlplane.kube.client import is_transient
from controlplane.kube.watch import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_GIVE_UP_AFTER = 300.0  # serve --startup-timeout


class ApiUnreachable(Exception):
    """The API server stayed unreachable for the whole start-up budget."""


@dataclass(frozen=True)
class StartupRetry:
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=1.0, maximum=30.0, jitter=0.2))
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER  # seconds; None retries forever


def describe(error: BaseException) -> str:
    """One line for the log: the apiserver's words, or the connection error's."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:300]


async def retrying(what: str, call: Callable[[], Awaitable[T]], *, retry: StartupRetry,
                   clock: Callable[[], float] = time.monotonic) -> T:
    """`await call()`, again after each transient failure, until it succeeds or the budget is spent."""
    started, attempt = clock(), 0
    while True:
        try:
            return await call()
        except Exception as error:
            if not is_transient(error):
                raise
            attempt += 1
            delay = retry.backoff.delay(attempt - 1)
            elapsed = clock() - started
            if retry.give_up_after is not None and elapsed + delay > retry.give_up_after:
                raise ApiUnreachable(
                    f"{what}: the API server did not answer within {retry.give_up_after:g} s "
                    f"({attempt} attempts; last: {describe(error)}); check the kubeconfig's server address "
                    "and that the API server runs, or raise --startup-timeout") from error
            budget = "" if retry.give_up_after is None else f", giving up in {retry.give_up_after - elapsed:.0f} s"
            log.warning("%s: API server not reachable (%s); attempt %d, next in %.1f s%s",
                        what, describe(error), attempt, delay, budget)
            await asyncio.sleep(delay)
