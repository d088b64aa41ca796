"""What every LlamaIndex class here shares: where its scorer comes from, and how it serialises."""

from __future__ import annotations

import os
import pickle
from typing import Any, ClassVar

from llama_index.core.bridge.pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from engine.errors import InputError
from engine.integrations import Need, ScorerSource, check_scorer

# What to_dict() writes in place of a ready scorer, which is a live object, not data.
READY_SCORER_PLACEHOLDER = "<ready scorer: pass scorer=... to from_dict>"


class ScorerFields(BaseModel):
    """``model=`` (loaded on first use) or ``scorer=`` (a ready one), plus ``model_kwargs``.

    ``to_dict()`` / ``from_dict()`` round-trip the settings, never the model. An instance built on
    a ready scorer writes a placeholder for it, and ``from_dict`` then needs ``scorer=`` again
    (rather than silently loading some other model).
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
        if value == READY_SCORER_PLACEHOLDER:
            raise InputError(
                f"This {cls.__name__} was saved from an instance built on a ready scorer, which "
                f"is not serialised. Pass it again: {cls.__name__}.from_dict(data, scorer=...)."
            )
        if value is not None:
            check_scorer(value, need=cls._need)
        return value

    @field_serializer("scorer", check_fields=False)
    def _serialize_scorer(self, value: Any) -> str | None:
        return None if value is None else READY_SCORER_PLACEHOLDER

    def __getstate__(self) -> dict[Any, Any]:
        # LlamaIndex drops (from the live object, too) whatever doesn't pickle, and unpickling
        # rebuilds from the rest: a reranker on a ready scorer would come back on the default
        # model. Refuse before that happens.
        scorer = getattr(self, "scorer", None)
        if scorer is not None:
            try:
                pickle.dumps(scorer)
            except Exception as exc:
                raise TypeError(
                    f"This {type(self).__name__} runs on a ready scorer that can't be pickled "
                    f"({exc}). Pickle one built from model=... instead, or pickle its to_dict() "
                    "and pass scorer=... to from_dict."
                ) from exc
        state: dict[Any, Any] = super().__getstate__()
        return state

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
