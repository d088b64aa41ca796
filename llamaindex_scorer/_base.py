"""What every LlamaIndex class here shares: where its scorer comes from (engine.wrapper_fields),
and how it serialises."""

from __future__ import annotations

import pickle
from typing import Any

from llama_index.core.bridge.pydantic import field_serializer, field_validator

from engine.errors import InputError
from engine.integrations import check_scorer
from engine.wrapper_fields import HybridFields, RerankFields, ScoringFields
from engine.wrapper_fields import ScorerFields as SharedScorerFields

__all__ = [
    "READY_SCORER_PLACEHOLDER", "HybridFields", "RerankFields", "ScorerFields", "ScoringFields",
]

# What to_dict() writes in place of a ready scorer, which is a live object, not data.
READY_SCORER_PLACEHOLDER = "<ready scorer: pass scorer=... to from_dict>"


class ScorerFields(SharedScorerFields):
    """``model=`` (loaded on first use) or ``scorer=`` (a ready one), plus ``model_kwargs``.

    ``to_dict()`` / ``from_dict()`` round-trip the settings, never the model. An instance built on
    a ready scorer writes a placeholder for it, and ``from_dict`` then needs ``scorer=`` again
    (rather than silently loading some other model).
    """

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
