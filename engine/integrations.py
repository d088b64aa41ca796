"""The framework-neutral half of the LangChain and LlamaIndex wrappers.

The wrappers (``langchain_scorer``, ``llamaindex_scorer``) only translate framework objects to
text and results back. What they share lives here, with no framework import:

- :class:`SupportsRerank` / :class:`SupportsEmbed`: what a "ready scorer" must offer, so a local
  :class:`~engine.Scorer` and a remote scorer are interchangeable.
- :class:`ScorerSource`: a ready scorer, or the arguments to load one on first use, so building
  a wrapper (and serialising it) never loads a model and empty input never does either.
- :func:`select`: ``score_threshold`` and ``top_n`` over a ranked list.
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal, Protocol, runtime_checkable

from .config import ScorerConfig, check_options
from .errors import InputError, UnsupportedScoreType
from .types import RerankResult, ScoreResult, ScoreType

__all__ = [
    "Need",
    "check_sequence",
    "copy_metadata",
    "ScorerSource",
    "SupportsEmbed",
    "SupportsRerank",
    "check_load_options",
    "check_score_threshold",
    "check_scorer",
    "check_top_n",
    "select",
]


@runtime_checkable
class SupportsRerank(Protocol):
    """A scorer the rerank wrappers can use: :class:`engine.Scorer` or a remote scorer."""

    def score(
        self, queries: str | Sequence[str], documents: str | Sequence[str], *,
        use_activation: bool | None = None, truncate_prompt_tokens: int | None = None,
    ) -> list[ScoreResult]: ...

    def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None,
        use_activation: bool | None = None, truncate_prompt_tokens: int | None = None,
    ) -> list[RerankResult]: ...

    async def ascore(
        self, queries: str | Sequence[str], documents: str | Sequence[str], *,
        use_activation: bool | None = None, truncate_prompt_tokens: int | None = None,
    ) -> list[ScoreResult]: ...

    async def arerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None,
        use_activation: bool | None = None, truncate_prompt_tokens: int | None = None,
    ) -> list[RerankResult]: ...


@runtime_checkable
class SupportsEmbed(Protocol):
    """A scorer the embedding wrappers can use: a bi-encoder :class:`engine.Scorer`."""

    def embed(self, texts: str | Sequence[str]) -> list[list[float]]: ...

    async def aembed(self, texts: str | Sequence[str]) -> list[list[float]]: ...


Need = Literal["rerank", "embed"]
_METHODS: dict[str, tuple[str, ...]] = {
    "rerank": ("score", "rerank", "ascore", "arerank"),
    "embed": ("embed", "aembed"),
}

# One lock for every lazy load in the process: loads are rare, and Scorer.load shares weights,
# so serialising them only stops two threads from reading the same checkpoint at once.
_LOAD_LOCK = threading.Lock()


def check_load_options(options: Mapping[str, Any], *, need: Need = "rerank") -> dict[str, Any]:
    """Validate the keyword arguments for ``Scorer.load`` without loading anything.

    Returns them as a plain dict; for embeddings ``score_type`` defaults to "bi-encoder", so a
    checkpoint that could serve several score types is loaded as the one that has vectors.

    Raises:
        InputError: an unknown option or a bad value (the message lists the options).
        UnsupportedScoreType: embeddings asked of a score type other than bi-encoder.
    """
    opts = dict(options)
    check_options(opts, what="load option")
    ScorerConfig(**opts)  # validates values (types, ranges, score_type names)
    if need == "embed":
        score_type = ScoreType.parse(opts.get("score_type") or ScoreType.BI_ENCODER)
        if score_type is not ScoreType.BI_ENCODER:
            raise UnsupportedScoreType(
                f"Embeddings need a bi-encoder, got score_type={score_type.value!r}. Drop the "
                "score_type option, or use this model for reranking instead."
            )
        opts["score_type"] = score_type
    return opts


def check_sequence(value: Any, *, name: str) -> list[Any]:
    """A wrapper's list argument as a list; None, a string, a dict or a set is refused.

    Frameworks hand lists through untyped code, so a wrong type reaches us as something that
    happens to iterate (a string's characters, a dict's keys, a set in arbitrary order).
    """
    if value is None:
        raise InputError(f"{name} is None; pass a list (an empty list for none).")
    if isinstance(value, (str, bytes, bytearray)):
        raise InputError(f"{name} must be a list, got a {type(value).__name__}; wrap it: [x].")
    if isinstance(value, (Mapping, AbstractSet)):
        raise InputError(
            f"{name} must be a list, got a {type(value).__name__}, whose iteration would not be "
            "the items in your order. Pass a list."
        )
    try:
        return list(value)
    except TypeError:
        raise InputError(f"{name} must be a list, got {type(value).__name__}.") from None


def copy_metadata(metadata: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """A deep copy of a document's metadata, so nothing done to a result reaches the caller's.

    A value that can't be deep-copied (a lock, an open file, a client) is an error naming its
    key: sharing it would let edits to the result reach the input.
    """
    try:
        return copy.deepcopy(dict(metadata))
    except Exception:
        for key, value in metadata.items():
            try:
                copy.deepcopy(value)
            except Exception as exc:
                raise InputError(
                    f"{where}: metadata[{key!r}] ({type(value).__name__}) can't be copied "
                    f"({type(exc).__name__}: {exc}), and results carry a copy of the metadata "
                    "so the input is never changed. Keep such objects out of metadata (store an "
                    "id or a string instead)."
                ) from None
        raise


def check_top_n(top_n: Any) -> int | None:
    """``top_n`` of a wrapper: None (keep all) or a positive int.

    0 is refused rather than read as vLLM's "all": in a retriever it would more likely be a bug.
    """
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise InputError(f"top_n must be a positive int, or None to keep all; got {top_n!r}.")
    return top_n


def check_score_threshold(threshold: Any) -> float | None:
    """``score_threshold``: None (off) or a real number; NaN would silently drop everything."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InputError(f"score_threshold must be a number or None, got {threshold!r}.")
    if math.isnan(threshold):
        raise InputError("score_threshold is NaN; pass a number, or None for no threshold.")
    return float(threshold)


def select(
    ranked: Sequence[RerankResult], *, top_n: int | None, score_threshold: float | None
) -> list[RerankResult]:
    """Keep the results scoring at least ``score_threshold``, then the first ``top_n``.

    ``ranked`` is best first, so both cuts keep a prefix and their order doesn't matter.
    """
    kept = [r for r in ranked if score_threshold is None or r.score >= score_threshold]
    return kept if top_n is None else kept[:top_n]


class ScorerSource:
    """Where a wrapper's scorer comes from: a ready one, or ``Scorer.load`` on first use.

    Args:
        scorer: a ready scorer (shared as is between every wrapper given it).
        model: a local folder or cached hub id; None is the bundled all-MiniLM-L6-v2.
        load_options: keyword arguments for ``Scorer.load`` (checked now, used at first use).
        need: "rerank" (score/rerank/ascore/arerank) or "embed" (embed/aembed).

    Copies (``copy.copy``/``deepcopy``, pydantic ``model_copy``) share the source, and so the
    loaded model: a model is never loaded twice because a wrapper was copied.
    """

    def __init__(
        self, *, scorer: Any = None, model: str | None = None,
        load_options: Mapping[str, Any] | None = None, need: Need = "rerank",
    ) -> None:
        if need not in _METHODS:
            raise InputError(f"need must be 'rerank' or 'embed', got {need!r}.")
        options = dict(load_options or {})
        if scorer is not None:
            if model is not None or options:
                raise InputError(
                    "Pass either a ready scorer (scorer=...) or a model to load (model=... with "
                    "its load options), not both: the load options would be ignored."
                )
            check_scorer(scorer, need=need)
        self._scorer: Any = scorer
        self._ready = scorer is not None
        self._model = model
        self._options = check_load_options(options, need=need)
        self._need = need

    @property
    def ready(self) -> bool:
        """True when built from a ready scorer (not loaded from ``model``)."""
        return self._ready

    @property
    def loaded(self) -> bool:
        return self._scorer is not None

    @property
    def model_name(self) -> str:
        """The model's name for events and traces, without loading it."""
        if self._scorer is not None:
            # A remote scorer may have no model name (the server decides): name its class then.
            return str(getattr(self._scorer, "model", None) or type(self._scorer).__name__)
        if self._model is not None:
            return self._model
        from .scorer import DEFAULT_MODEL

        return DEFAULT_MODEL

    def get(self) -> Any:
        """The scorer, loaded now if needed (thread-safe; Scorer.load shares weights)."""
        if self._scorer is None:
            with _LOAD_LOCK:
                if self._scorer is None:
                    from .scorer import Scorer

                    scorer = Scorer.load(self._model, **self._options)
                    check_scorer(scorer, need=self._need)
                    self._scorer = scorer
        return self._scorer

    async def aget(self) -> Any:
        """:meth:`get`, loading on a worker thread so the event loop keeps running."""
        if self._scorer is not None:
            return self._scorer
        return await asyncio.to_thread(self.get)

    # -- the calls the wrappers make; empty input never loads a model -----------------------------
    def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None,
        score_threshold: float | None, **options: Any,
    ) -> list[RerankResult]:
        """Rank ``documents`` for ``query``, then apply ``score_threshold`` and ``top_n``."""
        if not documents:
            return []
        ranked = self.get().rerank(query, documents, top_n=top_n, **options)
        return select(ranked, top_n=top_n, score_threshold=score_threshold)

    async def arerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None,
        score_threshold: float | None, **options: Any,
    ) -> list[RerankResult]:
        """:meth:`rerank` through the scorer's own async path."""
        if not documents:
            return []
        scorer = await self.aget()
        ranked = await scorer.arerank(query, documents, top_n=top_n, **options)
        return select(ranked, top_n=top_n, score_threshold=score_threshold)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], **options: Any) -> list[float]:
        """Scores of (query, document) pairs in order, as Python floats."""
        queries, documents = _split_pairs(pairs)
        if not documents:
            return []
        # One query for all pairs is vLLM's 1:N form, which encodes the query once.
        q: str | list[str] = queries[0] if len(set(queries)) == 1 else queries
        return [float(r.score) for r in self.get().score(q, documents, **options)]

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]], **options: Any) -> list[float]:
        """:meth:`score_pairs` through the scorer's own async path."""
        queries, documents = _split_pairs(pairs)
        if not documents:
            return []
        q: str | list[str] = queries[0] if len(set(queries)) == 1 else queries
        scorer = await self.aget()
        return [float(r.score) for r in await scorer.ascore(q, documents, **options)]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings of ``texts`` in order; [] for no texts, without loading a model."""
        if not texts:
            return []
        return _as_float_rows(self.get().embed(list(texts)))

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        scorer = await self.aget()
        return _as_float_rows(await scorer.aembed(list(texts)))

    def __getstate__(self) -> dict[str, Any]:
        # A pickle carries the recipe, not a model this source loaded itself (it reloads on
        # first use); a ready scorer is part of the state and must be picklable on its own.
        return {
            "scorer": self._scorer if self._ready else None, "model": self._model,
            "options": self._options, "need": self._need,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._scorer = state["scorer"]
        self._ready = state["scorer"] is not None
        self._model = state["model"]
        self._options = state["options"]
        self._need = state["need"]

    def __copy__(self) -> ScorerSource:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ScorerSource:
        return self

    def __repr__(self) -> str:
        state = "ready" if self._ready else ("loaded" if self.loaded else "not loaded")
        return f"ScorerSource(model={self.model_name!r}, {state})"


def check_scorer(scorer: Any, *, need: Need) -> None:
    """Refuse an object that lacks the methods a wrapper calls, naming what is missing."""
    missing = [m for m in _METHODS[need] if not callable(getattr(scorer, m, None))]
    if missing:
        what = "engine.Scorer or a remote scorer" if need == "rerank" else "bi-encoder Scorer"
        raise InputError(
            f"scorer must be an {what} with {', '.join(_METHODS[need])}; "
            f"{type(scorer).__name__} has no {', '.join(missing)}."
        )
    score_type = getattr(scorer, "score_type", None)
    if need == "embed" and score_type is not None and score_type != ScoreType.BI_ENCODER:
        raise UnsupportedScoreType(
            f"Embeddings need a bi-encoder scorer, but this scorer is "
            f"{getattr(score_type, 'value', score_type)}, which scores pairs and has no vectors. "
            "Use it with the rerank wrapper, and a bi-encoder (Scorer.load() gives the bundled "
            "all-MiniLM-L6-v2) for embeddings."
        )


def _split_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    queries: list[str] = []
    documents: list[str] = []
    for i, pair in enumerate(check_sequence(pairs, name="text_pairs")):
        if (
            isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
            or not all(isinstance(t, str) for t in pair)
        ):
            raise InputError(
                f"text_pairs[{i}] must be a (query, document) pair of strings, got {pair!r:.80}."
            )
        queries.append(pair[0])
        documents.append(pair[1])
    return queries, documents


def _as_float_rows(rows: Sequence[Sequence[Any]]) -> list[list[float]]:
    # A remote scorer may hand back numpy or JSON numbers; frameworks want Python floats.
    return [[float(x) for x in row] for row in rows]
