"""One small pure adapter per rerank API flavour: build the payload, parse the response.

No I/O here. An adapter turns a :class:`RemoteCall` (one HTTP request's worth of pairs) into a
JSON payload, and the server's JSON back into :class:`~engine.types.ScoreResult` objects whose
``index`` is the document's position in that call. Results are always mapped by the index the
server sent, never by position, and a response that does not account for every document exactly
once is an error (spec §8.5: servers sort best first, TEI answers a bare list, field names differ).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import InputError, RemoteScoreError
from ..types import ScoreResult

__all__ = [
    "ADAPTERS",
    "Adapter",
    "CohereAdapter",
    "InfinityAdapter",
    "JinaAdapter",
    "RemoteCall",
    "TeiAdapter",
    "VllmRerankAdapter",
    "VllmScoreAdapter",
    "get_adapter",
    "server_message",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoteCall:
    """The pairs of one HTTP request.

    Attributes:
        query: one query for all documents, or (``vllm-score`` N:N only) one per document.
        documents: the documents of this call, in the order results are indexed.
        model: the model name to send, if any.
        use_activation: None (server default), True, or False for raw logits.
        truncate_prompt_tokens: the caller's truncation option, mapped per flavour.
    """

    query: str | list[str]
    documents: list[str]
    model: str | None = None
    use_activation: bool | None = None
    truncate_prompt_tokens: int | None = None


def server_message(body: Any) -> str | None:
    """The server's own error message from any flavour's error body, or None.

    Shapes (spec §8.5): vLLM/Infinity ``{"error": {"message"}}``, vLLM's 401 and TEI
    ``{"error": "..."}``, Cohere ``{"message"}``, FastAPI ``{"detail": str | list}``.
    """
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(body.get("message"), str):
        return str(body["message"])
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()))
                parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return None


def _bad(message: str) -> RemoteScoreError:
    # A 2xx whose body doesn't match the request: the status was fine, the content was not.
    return RemoteScoreError(f"The server's response does not match the request: {message}")


def collect_results(
    items: list[tuple[Any, Any]], n_documents: int, *, score_key: str
) -> list[ScoreResult]:
    """(index, score) pairs from a response → ScoreResults in document order, fully checked.

    Raises:
        RemoteScoreError: a missing, duplicate, non-integer or out-of-range index, a score that
            isn't a number, or a count other than ``n_documents``.
    """
    scores: list[float | None] = [None] * n_documents
    for position, (index, score) in enumerate(items):
        if isinstance(index, bool) or not isinstance(index, int):
            raise _bad(f"result {position} has index {index!r}, not an integer.")
        if not 0 <= index < n_documents:
            raise _bad(
                f"result {position} has index {index}, out of range for {n_documents} documents."
            )
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise _bad(
                f"result {position} (index {index}) has {score_key} {score!r}, not a number."
            )
        try:
            value = float(score)
        except OverflowError:  # a JSON integer like 1e400 written out in full
            raise _bad(
                f"result {position} (index {index}) has {score_key} {str(score)[:24]}..., too "
                "large for a float."
            ) from None
        if not math.isfinite(value):  # NaN/Infinity are not JSON, but Python's parser takes them
            raise _bad(
                f"result {position} (index {index}) has {score_key} {value!r}, not a finite "
                "number, so it can't be ranked."
            )
        if scores[index] is not None:
            raise _bad(f"index {index} appears more than once.")
        scores[index] = value
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing or len(items) != n_documents:
        raise _bad(
            f"expected {n_documents} results, got {len(items)}; missing indices "
            f"{missing[:10]}{'…' if len(missing) > 10 else ''}."
        )
    return [ScoreResult(index=i, score=float(s)) for i, s in enumerate(scores)]  # type: ignore[arg-type]


def _result_items(body: Any, *, container: str | None, score_key: str) -> list[tuple[Any, Any]]:
    """Pull (index, score) from ``body[container]`` (or a bare list when container is None)."""
    if container is None:
        rows = body
        where = "a JSON array"
    else:
        if not isinstance(body, Mapping) or container not in body:
            raise _bad(f"expected a JSON object with a {container!r} list, got {_shape(body)}.")
        rows = body[container]
        where = f"{container!r}"
    if not isinstance(rows, list):
        raise _bad(f"expected {where} of results, got {_shape(rows)}.")
    items = []
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise _bad(f"result {position} is {_shape(row)}, not an object.")
        if "index" not in row or score_key not in row:
            raise _bad(f"result {position} lacks 'index' or {score_key!r}: {sorted(row)}.")
        items.append((row["index"], row[score_key]))
    return items


def _shape(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"an object with keys {sorted(value)[:8]}"
    return type(value).__name__ if value is not None else "null"


class Adapter:
    """Base of the flavour adapters. Subclasses set the class variables and two hooks.

    Class variables:
        name: the ``api=`` value.
        path: the route under the server root.
        env_var: where the API key is read from when none is passed.
        max_batch_size: documents per request unless the caller sets a cap (None: no cap).
        native_pairs: the endpoint takes N:N pairs itself (only vLLM's /score).
        requires_model: the API refuses a request without ``model``.
        results_key: the response's list of results (None: the body is that list).
        score_key: each result's score field.
    """

    name: ClassVar[str]
    path: ClassVar[str]
    env_var: ClassVar[str | None] = None
    max_batch_size: ClassVar[int | None] = None
    native_pairs: ClassVar[bool] = False
    requires_model: ClassVar[bool] = False
    results_key: ClassVar[str | None] = "results"
    score_key: ClassVar[str] = "relevance_score"

    def options(self, *, use_activation: bool | None, truncate_prompt_tokens: int | None
                ) -> dict[str, Any]:
        """Payload fields for the per-call options; InputError for an option the API lacks."""
        raise NotImplementedError

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        """The flavour's own body fields for ``call`` (the texts, model, flags)."""
        raise NotImplementedError

    def build_payload(self, call: RemoteCall) -> dict[str, Any]:
        """The request body: the flavour's fields plus the per-call options."""
        return {**self.fields(call),
                **self.options(use_activation=call.use_activation,
                               truncate_prompt_tokens=call.truncate_prompt_tokens)}

    def parse_response(self, body: Any, call: RemoteCall) -> list[ScoreResult]:
        """Scores in document order from a response body, every index and score checked."""
        items = _result_items(body, container=self.results_key, score_key=self.score_key)
        return collect_results(items, len(call.documents), score_key=self.score_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _no_raw_scores(name: str, use_activation: bool | None) -> None:
    if use_activation is False:
        raise InputError(
            f"The {name!r} API has no way to return raw logits (use_activation=False); "
            "leave use_activation unset, or use a vLLM, TEI or Infinity server."
        )


def _no_truncation(name: str, truncate_prompt_tokens: int | None) -> None:
    if truncate_prompt_tokens is not None:
        raise InputError(
            f"The {name!r} API has no truncation field, so truncate_prompt_tokens="
            f"{truncate_prompt_tokens} can't be honoured; leave it unset."
        )


class _VllmMixin:
    def options(self, *, use_activation: bool | None, truncate_prompt_tokens: int | None
                ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if use_activation is not None:
            out["use_activation"] = use_activation
        if truncate_prompt_tokens is not None:
            out["truncate_prompt_tokens"] = truncate_prompt_tokens
        return out


class VllmScoreAdapter(_VllmMixin, Adapter):
    """vLLM ``/score``: ``text_1``/``text_2`` in, ``data[{index, score}]`` in pair order out.

    ``text_1``/``text_2`` is the oldest spelling and every vLLM version still accepts it.
    """

    name = "vllm-score"
    path = "/score"
    env_var = "VLLM_API_KEY"
    native_pairs = True
    results_key = "data"
    score_key = "score"

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        payload: dict[str, Any] = {"text_1": call.query, "text_2": call.documents}
        if call.model is not None:
            payload["model"] = call.model
        return payload


class VllmRerankAdapter(_VllmMixin, Adapter):
    """vLLM ``/rerank`` (also ``/v1/rerank``, ``/v2/rerank``); top_n 0 (absent) returns all."""

    name = "vllm-rerank"
    path = "/rerank"
    env_var = "VLLM_API_KEY"

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": call.query, "documents": call.documents}
        if call.model is not None:
            payload["model"] = call.model
        return payload


class CohereAdapter(Adapter):
    """Cohere v2 ``/v2/rerank``. No top_n means all results; ``max_tokens_per_doc`` truncates.

    Cohere's ``max_tokens_per_doc`` cuts each document to N tokens (not the pair), so a
    positive ``truncate_prompt_tokens`` maps to it; -1 ("the model's maximum") sends nothing,
    as Cohere always truncates to its own default (4096).
    """

    name = "cohere"
    path = "/v2/rerank"
    env_var = "COHERE_API_KEY"
    max_batch_size = 1000  # Cohere's documented per-call cap
    requires_model = True

    def options(self, *, use_activation: bool | None, truncate_prompt_tokens: int | None
                ) -> dict[str, Any]:
        _no_raw_scores(self.name, use_activation)
        if truncate_prompt_tokens is not None and truncate_prompt_tokens > 0:
            return {"max_tokens_per_doc": truncate_prompt_tokens}
        return {}

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": call.model, "query": call.query,
                                   "documents": call.documents}
        return payload


class JinaAdapter(Adapter):
    """Jina ``/v1/rerank``: top_n set to every document, documents not echoed back."""

    name = "jina"
    path = "/v1/rerank"
    env_var = "JINA_API_KEY"
    requires_model = True

    def options(self, *, use_activation: bool | None, truncate_prompt_tokens: int | None
                ) -> dict[str, Any]:
        _no_raw_scores(self.name, use_activation)
        _no_truncation(self.name, truncate_prompt_tokens)
        return {}

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        return {"model": call.model, "query": call.query, "documents": call.documents,
                "top_n": len(call.documents), "return_documents": False}


class TeiAdapter(Adapter):
    """Hugging Face TEI ``/rerank``: ``texts`` in, a bare ``[{index, score}]`` list out.

    TEI has no top_n and no model field, and truncates only to the model's maximum, so
    ``truncate_prompt_tokens=-1`` maps to ``truncate: true`` and a positive count is refused.
    ``use_activation=False`` maps to ``raw_scores: true``.
    """

    name = "tei"
    path = "/rerank"
    env_var = "TEI_API_KEY"
    max_batch_size = 32  # TEI's default --max-client-batch-size
    results_key = None  # a bare list
    score_key = "score"

    def options(self, *, use_activation: bool | None, truncate_prompt_tokens: int | None
                ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if use_activation is not None:
            out["raw_scores"] = not use_activation
        if truncate_prompt_tokens is not None:
            if truncate_prompt_tokens != -1:
                raise InputError(
                    f"TEI can only truncate to the model's maximum length; pass "
                    f"truncate_prompt_tokens=-1 instead of {truncate_prompt_tokens}."
                )
            out["truncate"] = True
        return out

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": call.query, "texts": call.documents,
                                   "return_text": False}
        return payload


class InfinityAdapter(Adapter):
    """Infinity ``/rerank``: Cohere-like, ``raw_scores`` for logits, ``document`` a plain string."""

    name = "infinity"
    path = "/rerank"
    env_var = "INFINITY_API_KEY"
    max_batch_size = 2048  # Infinity's default INFINITY_MAX_CLIENT_BATCH_SIZE

    def options(self, *, use_activation: bool | None, truncate_prompt_tokens: int | None
                ) -> dict[str, Any]:
        _no_truncation(self.name, truncate_prompt_tokens)
        return {"raw_scores": True} if use_activation is False else {}

    def fields(self, call: RemoteCall) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": call.query, "documents": call.documents,
                                   "return_documents": False}
        if call.model is not None:
            payload["model"] = call.model
        return payload


ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls
    for cls in (VllmScoreAdapter, VllmRerankAdapter, CohereAdapter, JinaAdapter, TeiAdapter,
                InfinityAdapter)
}


def get_adapter(api: str) -> Adapter:
    """The adapter for ``api``; lists the flavours when the name is unknown."""
    try:
        return ADAPTERS[api]()
    except (KeyError, TypeError):
        options = ", ".join(repr(name) for name in ADAPTERS)
        raise InputError(f"Unknown remote api {api!r}. Options are {options}.") from None
