"""``RemoteScorer``: the local ``Scorer``'s methods over a rerank endpoint.

The pure part (:func:`plan_chunks`, :func:`merge_chunks`) splits the caller's pairs into
requests no larger than the server's cap and puts the answers back in the caller's order; the
adapter builds and parses each request; the driver sends them, sync or async.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from ..calls import ScorerBase, check_call
from ..errors import InputError
from ..types import ScoreResult
from .adapters import ADAPTERS, Adapter, RemoteCall, get_adapter
from .driver import HttpDriver, RetryPolicy

__all__ = ["Chunk", "RemoteConfig", "RemoteScorer", "merge_chunks", "plan_chunks"]


@dataclass(frozen=True, kw_only=True)
class RemoteConfig:
    """How a :class:`RemoteScorer` talks to its server (everything but the secret key).

    Attributes:
        base_url: the server root (the flavour adds its own path).
        api: the flavour: "vllm-score", "vllm-rerank", "cohere", "jina", "tei", "infinity".
        model: model name sent with each request (required by Cohere and Jina).
        path: overrides the flavour's route, e.g. "/v1/rerank" for Infinity behind a prefix.
        timeout: the deadline of each request in seconds, from connecting to the last byte of
            the answer (httpx's per-phase timeouts let a trickling server stall a caller).
        max_retries: retries on 429, 5xx, timeouts and dropped connections.
        retry_connect_errors: also retry when no connection can be made (refused, no such
            host); off, so a server that isn't running fails the call at once.
        retry_backoff: first retry wait in seconds; doubles each time. Retry-After wins.
        max_retry_wait: longest Retry-After honoured before failing instead.
        max_batch_size: documents per request; None uses the flavour's default cap
            (TEI 32, Cohere 1000, Infinity 2048, vLLM and Jina none).
        max_concurrency: requests in flight at once when a call is split.
    """

    base_url: str
    api: str = "vllm-score"
    model: str | None = None
    path: str | None = None
    timeout: float = 30.0
    max_retries: int = 3
    retry_backoff: float = 0.5
    max_retry_wait: float = 60.0
    retry_connect_errors: bool = False
    max_batch_size: int | None = None
    max_concurrency: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://",
                                                                               "https://")):
            raise InputError(
                f"base_url must be an http:// or https:// URL of the server root, "
                f"got {self.base_url!r}."
            )
        if self.api not in ADAPTERS:
            get_adapter(self.api)  # raises with the list of flavours
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            raise InputError(
                f"path must be a non-empty string like '/v1/rerank', got {self.path!r}."
            )
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or self.timeout <= 0:
            raise InputError(f"timeout must be a positive number of seconds, got {self.timeout!r}.")
        for name in ("max_batch_size", "max_concurrency"):
            value = getattr(self, name)
            if value is None and name == "max_batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        if self.model is None and ADAPTERS[self.api].requires_model:
            raise InputError(f"The {self.api!r} API needs a model name; pass model=... .")
        RetryPolicy(max_retries=self.max_retries, backoff=self.retry_backoff,
                    max_retry_wait=self.max_retry_wait)  # validates the three numbers
        if not isinstance(self.retry_connect_errors, bool):
            raise InputError(
                f"retry_connect_errors must be True or False, got {self.retry_connect_errors!r}."
            )


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """One request of a split call: its pairs and where each lands in the caller's order."""

    call: RemoteCall
    pair_ids: list[int]  # pair_ids[k]: the caller's pair index of call.documents[k]


def plan_chunks(
    queries: list[str],
    documents: list[str],
    query_index: list[int],
    *,
    cap: int | None,
    native_pairs: bool,
    model: str | None = None,
    use_activation: bool | None = None,
    truncate_prompt_tokens: int | None = None,
) -> list[Chunk]:
    """Split pairs into requests of at most ``cap`` documents.

    1:N sends the one query with consecutive document slices. N:N goes as slices of pairs where
    the endpoint pairs itself (``native_pairs``); otherwise pairs are grouped by query text (in
    order of first appearance) and each group is sent as 1:N rerank requests.
    """
    size = cap or len(documents)

    def make(query: str | list[str], ids: list[int]) -> Chunk:
        call = RemoteCall(query=query, documents=[documents[i] for i in ids], model=model,
                          use_activation=use_activation,
                          truncate_prompt_tokens=truncate_prompt_tokens)
        return Chunk(call=call, pair_ids=ids)

    ids = list(range(len(documents)))
    if len(queries) == 1:
        return [make(queries[0], ids[i:i + size]) for i in range(0, len(ids), size)]
    if native_pairs:
        return [make([queries[query_index[k]] for k in ids[i:i + size]], ids[i:i + size])
                for i in range(0, len(ids), size)]
    groups: dict[str, list[int]] = {}
    for k in ids:
        groups.setdefault(queries[query_index[k]], []).append(k)
    return [make(text, group[i:i + size])
            for text, group in groups.items() for i in range(0, len(group), size)]


def merge_chunks(chunks: Sequence[Chunk], answers: Sequence[list[ScoreResult]], n_pairs: int
                 ) -> list[ScoreResult]:
    """Per-chunk results (indexed within the chunk) → one list in the caller's pair order."""
    merged: list[ScoreResult | None] = [None] * n_pairs
    for chunk, results in zip(chunks, answers, strict=True):
        for r in results:
            k = chunk.pair_ids[r.index]
            merged[k] = replace(r, index=k)
    missing = [k for k, r in enumerate(merged) if r is None]
    if missing:  # adapters check every response, so this means a planning bug
        raise AssertionError(f"pairs {missing[:10]} got no score")
    return merged  # type: ignore[return-value]


class RemoteScorer(ScorerBase):
    """Score and rerank through a remote endpoint, with the local ``Scorer``'s methods and types.

    Flavours (``api=``) and their routes under ``base_url``:

    ==============  =====================  ================  ================================
    api             route                  key env var       notes
    ==============  =====================  ================  ================================
    "vllm-score"    /score                 VLLM_API_KEY      N:N sent as pairs, in pair order
    "vllm-rerank"   /rerank                VLLM_API_KEY      also /v1/rerank, /v2/rerank
    "cohere"        /v2/rerank             COHERE_API_KEY    model required, ≤1000 docs/call
    "jina"          /v1/rerank             JINA_API_KEY      model required
    "tei"           /rerank                TEI_API_KEY       ≤32 docs/call, bare-list answer
    "infinity"      /rerank                INFINITY_API_KEY  ≤2048 docs/call
    ==============  =====================  ================  ================================

    Scores are whatever the server computes (its activation); ``use_activation=False`` asks
    for raw logits where the API can (vLLM, TEI/Infinity ``raw_scores``) and is refused where it
    can't. Results never report truncation or token counts (``truncated=False``,
    ``num_tokens=0``): the APIs don't say.

    Example:
        >>> remote = RemoteScorer("http://localhost:8000", api="vllm-rerank")  # doctest: +SKIP
        >>> [r.index for r in remote.rerank("what is BM25?", ["a cat", "a ranking function"])]
        ... # doctest: +SKIP
        [1, 0]

    Raises (from every method):
        InputError / PairingError: bad input, checked before anything is sent.
        RemoteScoreError: the server failed (``status_code``, ``server_message``) or answered
            with results that don't match the request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api: str = "vllm-score",
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_batch_size: int | None = None,
        max_concurrency: int = 4,
        path: str | None = None,
        retry_backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        retry_connect_errors: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.config = RemoteConfig(
            base_url=base_url, api=api, model=model, path=path, timeout=timeout,
            max_retries=max_retries, retry_backoff=retry_backoff, max_retry_wait=max_retry_wait,
            retry_connect_errors=retry_connect_errors, max_batch_size=max_batch_size,
            max_concurrency=max_concurrency,
        )
        self.adapter: Adapter = get_adapter(api)
        # The environment is read here, at the edge, and only when no key was passed.
        key_source = self.adapter.env_var
        key = api_key
        if key is None and key_source:
            key = os.environ.get(key_source)
        self._driver = HttpDriver(
            self.config.base_url, api=api, api_key=key or None, key_source=key_source,
            timeout=float(timeout),
            policy=RetryPolicy(max_retries=max_retries, backoff=retry_backoff,
                               max_retry_wait=max_retry_wait,
                               retry_connect_errors=retry_connect_errors),
            headers=headers,
        )

    # -- properties --------------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return self.config.model

    @property
    def api(self) -> str:
        return self.config.api

    @property
    def base_url(self) -> str:
        return self._driver.base_url

    @property
    def path(self) -> str:
        return self.config.path or self.adapter.path

    @property
    def max_batch_size(self) -> int | None:
        """Documents per request: the caller's cap, else the flavour's default."""
        return self.config.max_batch_size or self.adapter.max_batch_size

    def __repr__(self) -> str:
        return (f"RemoteScorer({self.base_url!r}, api={self.api!r}, model={self.model!r}, "
                f"path={self.path!r})")

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the sync connection pool (the scorer reopens one if used again)."""
        self._driver.close()

    async def aclose(self) -> None:
        """Close the async connection pool."""
        await self._driver.aclose()

    def __enter__(self) -> RemoteScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteScorer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- pure planning -----------------------------------------------------------------------------
    def _plan(
        self, queries: Any, documents: Any, use_activation: bool | None,
        truncate_prompt_tokens: int | None,
    ) -> tuple[list[Chunk], int]:
        call = check_call(queries, documents, use_activation=use_activation,
                          truncate_prompt_tokens=truncate_prompt_tokens, max_length=None)
        # Refuse an option the API can't honour before anything is sent.
        self.adapter.options(use_activation=call.use_activation,
                             truncate_prompt_tokens=call.truncate_prompt_tokens)
        chunks = plan_chunks(
            call.queries, call.documents, call.query_index, cap=self.max_batch_size,
            native_pairs=self.adapter.native_pairs, model=self.model,
            use_activation=call.use_activation, truncate_prompt_tokens=call.truncate_prompt_tokens,
        )
        return chunks, len(call.documents)

    # -- sync --------------------------------------------------------------------------------------
    def _send(self, chunk: Chunk) -> list[ScoreResult]:
        body = self._driver.post(self.path, self.adapter.build_payload(chunk.call))
        return self.adapter.parse_response(body, chunk.call)

    def score(
        self,
        queries: str | Sequence[str],
        documents: str | Sequence[str],
        *,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
        progress: Any = None,
    ) -> list[ScoreResult]:
        """Score pairs by vLLM's rule (1:1, 1:N, N:N); one ScoreResult per document, in order.

        ``progress``, if given, is called with the number of pairs done after each request.
        """
        chunks, n = self._plan(queries, documents, use_activation, truncate_prompt_tokens)
        answers: list[list[ScoreResult]] = [[] for _ in chunks]
        workers = min(self.config.max_concurrency, len(chunks))
        if workers == 1:
            for i, chunk in enumerate(chunks):
                answers[i] = self._send(chunk)
                if progress is not None:
                    progress(len(chunk.pair_ids))
            return merge_chunks(chunks, answers, n)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remote-scorer") as pool:
            futures = {pool.submit(self._send, chunk): i for i, chunk in enumerate(chunks)}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            for future, i in futures.items():
                answers[i] = future.result()
                if progress is not None:
                    progress(len(chunks[i].pair_ids))
        return merge_chunks(chunks, answers, n)

    # -- async -------------------------------------------------------------------------------------
    async def _asend(self, chunk: Chunk, gate: asyncio.Semaphore) -> list[ScoreResult]:
        async with gate:
            body = await self._driver.apost(self.path, self.adapter.build_payload(chunk.call))
        return self.adapter.parse_response(body, chunk.call)

    async def ascore(
        self,
        queries: str | Sequence[str],
        documents: str | Sequence[str],
        *,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
    ) -> list[ScoreResult]:
        """Async :meth:`score`: requests go out on the event loop, up to max_concurrency at once."""
        chunks, n = self._plan(queries, documents, use_activation, truncate_prompt_tokens)
        gate = asyncio.Semaphore(self.config.max_concurrency)
        tasks = [asyncio.ensure_future(self._asend(chunk, gate)) for chunk in chunks]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if task in done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return merge_chunks(chunks, [task.result() for task in tasks], n)
