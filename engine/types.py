"""Plain result and option types. No torch import here: remote mode and the wrappers use them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InputError, UnsupportedScoreType
from .media import ScoreContent

__all__ = [
    "CacheInfo", "LoRARequest", "LoraAdapterInfo", "RerankResult", "ScoreResult", "ScoreType",
]


class ScoreType(str, enum.Enum):
    """The three score types of vLLM's scoring API."""

    CROSS_ENCODER = "cross-encoder"
    LATE_INTERACTION = "late-interaction"
    BI_ENCODER = "bi-encoder"

    @classmethod
    def parse(cls, value: ScoreType | str) -> ScoreType:
        """Turn a user string into a ScoreType, listing the options when it isn't one."""
        if isinstance(value, ScoreType):
            return value
        normalized = str(value).strip().lower().replace("_", "-")
        for member in cls:
            if member.value == normalized:
                return member
        options = ", ".join(repr(m.value) for m in cls)
        raise UnsupportedScoreType(f"Unknown score_type {value!r}. Options are {options}.")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, kw_only=True, slots=True)
class ScoreResult:
    """The score of one (query, document) pair.

    Attributes:
        index: position of the pair (and of the document) in the caller's input.
        score: the score as a Python float.
        truncated: True if any input of this pair was cut to fit.
        num_tokens: tokens the model read for this pair (cross-encoder: the pair prompt;
            bi-encoder and late-interaction: query tokens + document tokens).
        query_tokens: bi-encoder and late-interaction: the query's share of ``num_tokens`` (the
            query is encoded once per call, not once per pair); None for a cross-encoder.
        prompt_token_ids: the token ids the pair was scored from, where asked for (vLLM's
            ``prompt_token_ids``; for two encodings, query ids + [pad] + document ids).
    """

    index: int
    score: float
    truncated: bool = False
    num_tokens: int = 0
    query_tokens: int | None = None
    prompt_token_ids: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        # Short: a list of results prints one line each, not thousands of token ids.
        ids = self.prompt_token_ids
        shown = "" if ids is None else f", prompt_token_ids=<{len(ids)} ids>"
        return (f"ScoreResult(index={self.index}, score={self.score:.6g}, "
                f"truncated={self.truncated}, num_tokens={self.num_tokens}{shown})")


@dataclass(frozen=True, kw_only=True, slots=True)
class RerankResult:
    """One document of a rerank, in ranked order.

    Attributes:
        index: position of the document in the caller's ``documents``.
        score: relevance score as a Python float (``relevance_score`` on the wire).
        document: the document as given: its text, or for a model that reads images the
            parsed ``{"content": [...]}`` item (an engine.media.ScoreContent).
        truncated: True if the document (or the pair) was cut to fit.
        num_tokens: as in ScoreResult.
    """

    index: int
    score: float
    document: str | ScoreContent
    truncated: bool = False
    num_tokens: int = 0

    def __repr__(self) -> str:
        # The document as a 60-character snippet: reprs of whole abstracts bury the scores.
        if isinstance(self.document, str):
            flat = " ".join(self.document.split())
            doc = repr(flat if len(flat) <= 60 else flat[:59] + "…")
        else:
            doc = f"<content: {len(self.document.parts)} parts>"
        return (f"RerankResult(index={self.index}, score={self.score:.6g}, document={doc}, "
                f"truncated={self.truncated})")

    @property
    def relevance_score(self) -> float:
        """Alias of ``score``, the name used by rerank APIs."""
        return self.score


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheInfo:
    """The document cache of a bi-encoder or late-interaction scorer (``doc_cache_size``).

    Attributes:
        hits: documents served from the cache since it was made (or cleared).
        misses: documents that went through the model instead.
        entries: documents held now.
        max_entries: the most it holds (``doc_cache_size``).
    """

    hits: int
    misses: int
    entries: int
    max_entries: int


@dataclass(frozen=True, eq=False)
class LoRARequest:
    """vLLM's ``LoRARequest(lora_name, lora_int_id, lora_path)``: score a call with an adapter.

    Positional order and field names are vLLM's, so ``LoRARequest("a", 1, "/path")`` ports
    unchanged. As in vLLM, two requests are equal when their names are (``__eq__``/``__hash__``).

    Attributes:
        lora_name: the adapter's name (what a server request's ``model`` names).
        lora_int_id: a positive id, unique per adapter.
        lora_path: the PEFT folder (adapter_config.json + adapter_model.safetensors).
        base_model_name: optional; vLLM's field, not checked.
    """

    lora_name: str
    lora_int_id: int
    lora_path: str = ""
    base_model_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lora_name, str) or not self.lora_name:
            raise InputError(f"lora_name must be a non-empty string, got {self.lora_name!r}.")
        if isinstance(self.lora_int_id, bool) or not isinstance(self.lora_int_id, int) or (
            self.lora_int_id < 1
        ):
            raise InputError(f"id must be > 0, got {self.lora_int_id!r}")  # vLLM's text
        if not isinstance(self.lora_path, str) or not self.lora_path:
            raise InputError(
                f"lora_path of adapter {self.lora_name!r} is empty; give the PEFT adapter folder."
            )

    @property
    def name(self) -> str:
        return self.lora_name

    @property
    def path(self) -> str:
        return self.lora_path

    @property
    def adapter_id(self) -> int:
        return self.lora_int_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoRARequest) and other.lora_name == self.lora_name

    def __hash__(self) -> int:
        return hash(self.lora_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoraAdapterInfo:
    """A LoRA adapter registered on a loaded model (what ``/v1/models`` lists).

    Attributes:
        name: the adapter's name.
        lora_int_id: its id (given, or the next free one).
        path: the adapter folder, resolved.
        rank: the LoRA rank ``r`` (the largest, with a rank_pattern).
        lora_alpha: the scaling numerator.
        base_model_name_or_path: what adapter_config.json says it was trained on.
        modules: how many modules it changes (LoRA updates plus replaced heads).
    """

    name: str
    lora_int_id: int
    path: str
    rank: int
    lora_alpha: float
    base_model_name_or_path: str | None
    modules: int
