"""The pydantic fields the LangChain and LlamaIndex wrappers share, validated once for both.

Both frameworks build their components on pydantic 2, so the wrappers' common settings live
here as two mixins (this module imports pydantic, which ``import engine`` never does):

- :class:`ScorerFields`: where the scorer comes from, ``model=`` (loaded on first use) or a
  ready ``scorer=``, plus ``model_kwargs`` for ``Scorer.load``;
- :class:`ScoringFields` / :class:`RerankFields`: ``use_activation`` and
  ``truncate_prompt_tokens``, and for rerankers ``top_n`` and ``score_threshold``;
- :class:`HybridFields`: fuse the model's scores with the first stage's (``hybrid=``).

The checks themselves are the framework-neutral ones of :mod:`engine.integrations`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .errors import InputError
from .fusion import Fused, Hybrid, fuse_ranked
from .integrations import (
    Need,
    ScorerSource,
    check_score_threshold,
    check_scorer,
    check_top_n,
)

__all__ = ["HybridFields", "RerankFields", "ScorerFields", "ScoringFields"]


class ScorerFields(BaseModel):
    """``model=`` (loaded on first use) or ``scorer=`` (a ready one), plus ``model_kwargs``.

    Subclasses declare ``scorer`` with the protocol they need and set ``_need``.
    """

    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, protected_namespaces=()
    )

    model: str | None = Field(
        default=None,
        description="A local model folder (or a hub id already in the cache); None, with no "
        "scorer, is the bundled all-MiniLM-L6-v2. Loaded on first use, once per process.",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for engine.Scorer.load (score_type, device, dtype, "
        "max_length, batch_size, overflow, ...). Checked when the object is built.",
    )

    _need: ClassVar[Need] = "rerank"
    _source: ScorerSource | None = PrivateAttr(default=None)
    _source_key: tuple[Any, ...] = PrivateAttr(default=())

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("scorer", mode="before", check_fields=False)
    @classmethod
    def _check_scorer(cls, value: Any) -> Any:
        if value is not None:
            check_scorer(value, need=cls._need)
        return value

    @model_validator(mode="after")
    def _build_source(self) -> ScorerFields:
        self._scorer_source()
        return self

    def _scorer_source(self) -> ScorerSource:
        # Rebuilt when the fields changed since (model_copy(update=...) skips validation).
        scorer = getattr(self, "scorer", None)
        key = (id(scorer), self.model, repr(sorted(self.model_kwargs.items())))
        if self._source is None or key != self._source_key:
            self._source = ScorerSource(
                scorer=scorer, model=self.model, load_options=self.model_kwargs, need=self._need
            )
            self._source_key = key
        return self._source


class ScoringFields(BaseModel):
    """The per-call options every scoring wrapper passes through to the engine."""

    use_activation: bool | None = Field(
        default=None,
        description="None/True: the model's activation (sigmoid for cross-encoders); False: raw "
        "scores (logits, unnormalised MaxSim).",
    )
    truncate_prompt_tokens: int | None = Field(
        default=None,
        description="As vLLM: cut each model input to this many tokens (-1: the model maximum).",
    )

    def _scoring_options(self) -> dict[str, Any]:
        return {
            "use_activation": self.use_activation,
            "truncate_prompt_tokens": self.truncate_prompt_tokens,
        }


class RerankFields(ScoringFields):
    """A reranker's cut: ``top_n`` after ``score_threshold``, on the full sort."""

    top_n: int | None = Field(
        default=3, description="How many to return, best first; None returns all that pass."
    )
    score_threshold: float | None = Field(
        default=None,
        description="Drop results scoring below this, after the full sort (on the score scale).",
    )

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: Any) -> int | None:
        return check_top_n(value)

    @field_validator("score_threshold", mode="before")
    @classmethod
    def _check_threshold(cls, value: Any) -> float | None:
        return check_score_threshold(value)

    def _rerank_options(self) -> dict[str, Any]:
        return {
            "top_n": self.top_n, "score_threshold": self.score_threshold,
            **self._scoring_options(),
        }


class HybridFields(BaseModel):
    """Hybrid reranking: the model's score fused with the first stage's (engine.fusion).

    With ``hybrid`` set, every document is scored, the fused score ranks them and becomes the
    result's score (``top_n`` and ``score_threshold`` apply to it), and the model's own score is
    kept under ``model_score_key``. On SciFact (BM25 top-100, bundled MiniLM) the blend lifts
    nDCG@10 from 0.664 (BM25) and 0.646 (MiniLM) to 0.709 (README, "What make demo shows").
    """

    hybrid: Hybrid | None = Field(
        default=None,
        description="None: the model's score alone. 'rrf': reciprocal-rank fusion of the two "
        "orders (no calibration needed). 'blend': weighted mean of min-max normalised scores.",
    )
    hybrid_weight: float = Field(
        default=0.5, description="The model's share of the fusion, in [0, 1]; the first stage "
        "gets the rest.")
    rrf_k: float = Field(default=60.0, description="RRF's smoothing constant (>= 0).")
    first_stage_key: str | None = Field(
        default=None,
        description="Metadata key holding each document's first-stage score (e.g. a BM25 "
        "score). None: the input order is the first-stage ranking.",
    )
    model_score_key: str = Field(
        default="model_score",
        description="Metadata key the model's own score is kept under when hybrid is set.",
    )

    @field_validator("hybrid_weight", mode="before")
    @classmethod
    def _check_weight(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0.0 <= value <= 1.0
        ):
            raise InputError(f"hybrid_weight must be a number in [0, 1], got {value!r}.")
        return float(value)

    @field_validator("rrf_k", mode="before")
    @classmethod
    def _check_k(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or (
            value == float("inf")
        ):
            raise InputError(f"rrf_k must be a finite number >= 0, got {value!r}.")
        return float(value)

    @field_validator("model_score_key", "first_stage_key")
    @classmethod
    def _check_hybrid_keys(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise InputError("first_stage_key / model_score_key must be non-empty strings.")
        return value

    def _fuse(self, ranked: Sequence[Any], first_stage: Sequence[float] | None, *,
              top_n: int | None, score_threshold: float | None) -> list[Fused]:
        assert self.hybrid is not None
        return fuse_ranked(ranked, first_stage, method=self.hybrid,
                           model_weight=self.hybrid_weight, rrf_k=self.rrf_k, top_n=top_n,
                           score_threshold=score_threshold)


def first_stage_value(value: Any, *, key: str, where: str) -> float:
    """A document's first-stage score from its metadata: a real number, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(
            f"{where} has {key!r} = {value!r:.40}, not a number; hybrid ranking with "
            f"first_stage_key={key!r} needs a numeric first-stage score on every document."
        )
    return float(value)
