"""A whole-request deadline for the sync httpx client (httpx's timeouts are per phase).

httpx applies ``timeout`` to each connect, each read and each write on its own, so a server
that trickles one byte every 0.4 s never trips a 1 s read timeout and holds the caller for as
long as it likes. This wraps the sync network backend of httpcore (the layer under httpx) so
that every socket operation of a request waits at most until that request's deadline, headers
included. The async client needs none of it: ``asyncio.wait_for`` bounds the whole request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["deadline", "with_deadlines"]

_state = threading.local()  # the deadline of the request this thread is sending, if any


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Socket operations of this thread's request must finish within ``seconds`` from now."""
    previous = getattr(_state, "at", None)
    _state.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _state.at = previous


def _bound(timeout: float | None) -> float | None:
    """The socket timeout for one operation: the phase timeout, cut to what the deadline
    leaves."""
    import httpcore

    at = getattr(_state, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream:
    """An httpcore network stream whose reads and writes respect the thread's deadline."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bytes(self._inner.read(max_bytes, _bound(timeout)))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bound(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _Stream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _bound(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend:
    """httpcore's sync network backend, handing out deadline-aware streams."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> _Stream:
        return _Stream(self._inner.connect_tcp(host, port, _bound(timeout), local_address,
                                               socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(path, _bound(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def with_deadlines(transport: Any) -> Any:
    """``transport`` (an httpx.HTTPTransport) with its pool's sockets under :func:`deadline`.

    Where the pool is not the httpcore one this knows (another httpx version, a mock or a
    custom transport), it is returned as it is and only httpx's per-phase timeouts apply.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None and not isinstance(backend, _Backend):
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
    return transport
