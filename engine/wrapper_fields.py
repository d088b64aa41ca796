"""The pydantic fields the LangChain and LlamaIndex wrappers share, validated once for both.

Both frameworks build their components on pydantic 2, so the wrappers' common settings live
here as two mixins (this module imports pydantic, which ``import engine`` never does):

- :class:`ScorerFields`: where the scorer comes from, ``model=`` (loaded on first use) or a
  ready ``scorer=``, plus ``model_kwargs`` for ``Scorer.load``;
- :class:`ScoringFields` / :class:`RerankFields`: ``use_activation`` and
  ``truncate_prompt_tokens``, and for rerankers ``top_n`` and ``score_threshold``.

The checks themselves are the framework-neutral ones of :mod:`engine.integrations`.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .integrations import (
    Need,
    ScorerSource,
    check_score_threshold,
    check_scorer,
    check_top_n,
)

__all__ = ["RerankFields", "ScorerFields", "ScoringFields"]


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
