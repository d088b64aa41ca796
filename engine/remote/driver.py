"""The one HTTP driver of remote mode: sync and async httpx clients, retries, timeouts, errors.

Everything that is not I/O (which statuses retry, how long to wait, what the error says) is a
pure function here; only the send loop exists twice, once over ``httpx.Client`` and once over
``httpx.AsyncClient`` (the httpx pattern: parallel types over an I/O-free core).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .._optional import require
from ..errors import InputError, RemoteScoreError
from .adapters import server_message
from .deadline import deadline, with_deadlines

__all__ = ["HttpDriver", "RetryPolicy", "retry_after_seconds", "should_retry"]

logger = logging.getLogger("engine.remote")

_SNIPPET = 300  # characters of a non-JSON body quoted in an error


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When and how long to retry.

    Attributes:
        max_retries: extra attempts after the first (0 = never retry).
        backoff: first wait in seconds; doubles each retry (with up to 10% jitter).
        max_backoff: ceiling on the computed wait.
        max_retry_wait: the longest ``Retry-After`` honoured; a server asking for longer fails
            the call at once instead of blocking the caller for that long.
        retry_connect_errors: retry when the connection can't be made at all (refused, no
            such host). Off by default: nothing listens there, and retrying only makes the
            caller wait before the same error.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_wait: float = 60.0
    retry_connect_errors: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or self.max_retries < 0:
            raise InputError(f"max_retries must be an int ≥ 0, got {self.max_retries!r}.")
        for name in ("backoff", "max_backoff", "max_retry_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"{name} must be a number ≥ 0 (seconds), got {value!r}.")


def should_retry(status: int) -> bool:
    """429 and 5xx are worth another try; 501/505 say the server never will, so they aren't."""
    return status == 429 or (500 <= status <= 599 and status not in (501, 505))


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    """Wait before retry number ``attempt`` (1-based): the server's Retry-After, else backoff."""
    if retry_after is not None:
        return retry_after
    base = min(policy.max_backoff, policy.backoff * 2.0 ** (attempt - 1))
    return float(base * (1.0 + 0.1 * random.random()))


class _Secret:
    """Holds the API key so that no repr, log line or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('**********')"

    __str__ = __repr__


class _Attempt:
    """The outcome of one HTTP exchange: a body, or an error plus whether to retry it."""

    __slots__ = ("body", "error", "retry_after", "retryable")

    def __init__(self, *, body: Any = None, error: RemoteScoreError | None = None,
                 retryable: bool = False, retry_after: float | None = None) -> None:
        self.body = body
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


class HttpDriver:
    """POSTs JSON to one server with retries; owns one sync and (per event loop) one async client.

    Args:
        base_url: the server root, e.g. ``http://localhost:8000``.
        api: flavour name, used in error messages.
        api_key: sent as ``Authorization: Bearer``; never shown anywhere.
        key_source: where a key would come from (for the 401 hint), e.g. "COHERE_API_KEY".
        timeout: the deadline of each request in seconds, from connecting to the last byte of
            the answer (not per phase: a server trickling bytes can't stretch it).
        policy: the retry policy.
        headers: extra headers for every request.
        transport / async_transport: httpx transports (tests, proxies, mounts).
        sleep / async_sleep: how to wait between retries (injectable for tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api: str,
        api_key: str | None = None,
        key_source: str | None = None,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Any = None,
        async_transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._httpx = require("httpx", extra="remote", purpose="Remote scoring (RemoteScorer)")
        self.base_url = base_url.rstrip("/")
        self.api = api
        self._key = _Secret(api_key) if api_key else None
        self._key_source = key_source
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         **dict(headers or {})}
        self._transport = transport
        self._async_transport = async_transport
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._client: Any = None
        self._aclient: Any = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpDriver({self.base_url!r}, api={self.api!r}, timeout={self.timeout})"

    # -- I/O-free core -----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def _request_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.get()}"
        return headers

    def _hint(self, status: int, path: str, message: str) -> str:
        if status in (401, 403):
            where = f"api_key= or the {self._key_source} environment variable" \
                if self._key_source else "api_key="
            state = "was sent" if self._key is not None else "was not set"
            return f" A key {state}; check {where}."
        if status == 404:
            return (f" Check that base_url is the server root; the {self.api!r} flavour posts to "
                    f"{path!r} (pass path= to change it).")
        if status == 413 or (status == 422 and "batch size" in message):
            return " Lower max_batch_size to the server's per-request limit."
        return ""

    def _judge(self, response: Any, path: str) -> _Attempt:
        """Turn one (read) response into a body, or an error marked retryable or not."""
        status = int(response.status_code)
        text = response.text
        try:
            body = json.loads(text) if text else None
            is_json = bool(text)
        except ValueError:
            body, is_json = None, False
        url = self.url(path)
        if 200 <= status < 300:
            if not is_json:
                return _Attempt(error=RemoteScoreError(
                    f"{self.api} server at {url} answered {status} with a body that is not JSON: "
                    f"{text[:_SNIPPET]!r}.",
                    status_code=status,
                ))
            return _Attempt(body=body)
        message = server_message(body) if is_json else (text.strip()[:_SNIPPET] or None)
        reason = getattr(response, "reason_phrase", "") or ""
        error = RemoteScoreError(
            f"{self.api} request to {url} failed with HTTP {status} {reason}".rstrip()
            + (f": {message}" if message else " (empty body).")
            + self._hint(status, path, message or ""),
            status_code=status,
            server_message=message,
        )
        return _Attempt(
            error=error, retryable=should_retry(status),
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def _transport_error(self, exc: Exception, path: str) -> _Attempt:
        if isinstance(exc, (self._httpx.TimeoutException, TimeoutError)):
            what = (f"timed out after {self.timeout}s, the deadline of one request "
                    f"({type(exc).__name__})")
            retryable = True
        elif isinstance(exc, self._httpx.ConnectError):
            what = (f"could not be sent: {type(exc).__name__}: {exc}. Nothing answered at "
                    f"{self.base_url}: check the server is running and base_url")
            retryable = self.policy.retry_connect_errors
        else:
            what = f"could not be sent: {type(exc).__name__}: {exc}"
            retryable = True
        return _Attempt(
            error=RemoteScoreError(f"{self.api} request to {self.url(path)} {what}."),
            retryable=retryable,
        )

    def _next_wait(self, attempt: int, outcome: _Attempt) -> float | None:
        """Seconds to wait before retry ``attempt``, or None to give up with the error."""
        if not outcome.retryable or attempt > self.policy.max_retries:
            return None
        if outcome.retry_after is not None and outcome.retry_after > self.policy.max_retry_wait:
            return None
        return backoff_delay(self.policy, attempt, outcome.retry_after)

    def _give_up(self, outcome: _Attempt, attempts: int) -> RemoteScoreError:
        error = outcome.error
        assert error is not None
        if attempts > 1:
            error.args = (f"{error.args[0]} (gave up after {attempts} attempts)",)
        elif outcome.retry_after is not None and outcome.retry_after > self.policy.max_retry_wait:
            error.args = (f"{error.args[0]} The server asked to retry after "
                          f"{outcome.retry_after:.0f}s, over max_retry_wait="
                          f"{self.policy.max_retry_wait:.0f}s.",)
        return error

    def _log_retry(self, path: str, outcome: _Attempt, attempt: int, wait: float) -> None:
        status = outcome.error.status_code if outcome.error is not None else None
        logger.warning(
            "%s: POST %s got %s; retry %d/%d in %.2fs", self.api, self.url(path),
            status if status is not None else "no response", attempt, self.policy.max_retries, wait,
        )

    # -- sync I/O ----------------------------------------------------------------------------------
    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                transport = self._transport or with_deadlines(self._httpx.HTTPTransport())
                self._client = self._httpx.Client(
                    timeout=self._httpx.Timeout(self.timeout), transport=transport
                )
            return self._client

    def post(self, path: str, payload: Mapping[str, Any]) -> Any:
        """POST ``payload`` as JSON and return the decoded JSON body, retrying per the policy."""
        client = self._sync_client()
        attempt = 0
        while True:
            attempt += 1
            try:
                with deadline(self.timeout):
                    response = client.post(self.url(path), json=payload,
                                           headers=self._request_headers())
                outcome = self._judge(response, path)
            except self._httpx.TransportError as exc:
                outcome = self._transport_error(exc, path)
            if outcome.error is None:
                return outcome.body
            wait = self._next_wait(attempt, outcome)
            if wait is None:
                raise self._give_up(outcome, attempt)
            self._log_retry(path, outcome, attempt, wait)
            self._sleep(wait)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- async I/O ---------------------------------------------------------------------------------
    def _async_client(self) -> Any:
        # An AsyncClient's connections belong to the loop that made them; a new loop (e.g. a
        # second asyncio.run) gets a fresh client rather than a broken pool.
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = self._httpx.AsyncClient(
                timeout=self._httpx.Timeout(self.timeout), transport=self._async_transport
            )
            self._aclient_loop = loop
        return self._aclient

    async def apost(self, path: str, payload: Mapping[str, Any]) -> Any:
        """Async :meth:`post`."""
        client = self._async_client()
        attempt = 0
        while True:
            attempt += 1
            try:
                # wait_for bounds the whole exchange, headers and body, not each phase.
                response = await asyncio.wait_for(
                    client.post(self.url(path), json=payload, headers=self._request_headers()),
                    self.timeout,
                )
                outcome = self._judge(response, path)
            except (self._httpx.TransportError, asyncio.TimeoutError) as exc:
                outcome = self._transport_error(exc, path)
            if outcome.error is None:
                return outcome.body
            wait = self._next_wait(attempt, outcome)
            if wait is None:
                raise self._give_up(outcome, attempt)
            self._log_retry(path, outcome, attempt, wait)
            await self._async_sleep(wait)

    async def aclose(self) -> None:
        client, self._aclient, self._aclient_loop = self._aclient, None, None
        if client is not None:
            await client.aclose()
