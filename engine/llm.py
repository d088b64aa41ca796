"""A vLLM-compatible offline shim: ``LLM(model=..., runner="pooling").score(data_1, data_2)``.

Only the scoring surface of vLLM's ``LLM`` is offered; code written for vLLM's offline scoring
runs unchanged::

    llm = LLM(model="path/to/reranker", runner="pooling")
    (output,) = llm.score("What is the capital of France?", "Paris is the capital of France.")
    print(output.outputs.score)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import check_options
from .errors import InputError
from .scorer import Scorer
from .types import ScoreType

__all__ = ["LLM", "PoolingParams", "ScoringOutput", "ScoringRequestOutput"]

logger = logging.getLogger("engine")

# vLLM's pooling tasks (old and new names) → our score types.
_TASKS = {
    "score": ScoreType.CROSS_ENCODER,
    "classify": ScoreType.CROSS_ENCODER,
    "embed": ScoreType.BI_ENCODER,
    "token_embed": ScoreType.LATE_INTERACTION,
}
# Engine arguments that matter to vLLM's GPU scheduler but mean nothing here; accepted so
# vLLM code runs unchanged.
_IGNORED_ENGINE_ARGS = {
    "gpu_memory_utilization", "enforce_eager", "tensor_parallel_size", "pipeline_parallel_size",
    "seed", "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "swap_space",
    "disable_log_stats", "tokenizer_mode", "download_dir", "load_format", "kv_cache_dtype",
}


@dataclass(frozen=True, kw_only=True)
class PoolingParams:
    """The subset of vLLM's ``PoolingParams`` that scoring reads."""

    use_activation: bool | None = None


@dataclass(frozen=True)
class ScoringOutput:
    """vLLM's ``ScoringOutput``: one scalar score."""

    score: float


@dataclass(frozen=True)
class ScoringRequestOutput:
    """vLLM's ``ScoringRequestOutput``: ``.outputs.score`` holds the value."""

    request_id: str
    outputs: ScoringOutput
    prompt_token_ids: list[int] = field(default_factory=list)
    num_tokens: int = 0
    truncated: bool = False
    finished: bool = True


class LLM:
    """The scoring part of ``vllm.LLM``, backed by the local engine."""

    def __init__(
        self,
        model: str,
        *,
        runner: str = "pooling",
        task: str | None = None,
        convert: str | None = None,
        tokenizer: str | None = None,
        dtype: Any = "auto",
        trust_remote_code: bool = False,
        max_model_len: int | None = None,
        revision: str | None = None,
        device: str = "auto",
        **kwargs: Any,
    ) -> None:
        if runner not in ("pooling", "auto"):
            raise InputError(
                f"runner={runner!r}: this LLM only scores; use runner='pooling' (vLLM's pooling "
                "runner), or vLLM itself for generation."
            )
        if tokenizer is not None and tokenizer != model:
            raise InputError("A separate tokenizer= is not supported; the model folder's is used.")
        ignored = set(kwargs) & _IGNORED_ENGINE_ARGS
        if ignored:
            logger.info("Ignoring vLLM engine arguments with no local meaning: %s", sorted(ignored))
        options = {k: v for k, v in kwargs.items() if k not in _IGNORED_ENGINE_ARGS}
        check_options(options, what="LLM argument")
        score_type = options.pop("score_type", None)
        key = task or convert
        if key is not None and score_type is None:
            if key not in _TASKS:
                raise InputError(
                    f"task/convert={key!r} is not a scoring task; use one of {sorted(_TASKS)}."
                )
            score_type = _TASKS[key]
        self.scorer = Scorer.load(
            model, score_type=score_type, device=device, dtype=dtype, max_length=max_model_len,
            trust_remote_code=trust_remote_code, revision=revision, **options,
        )

    def score(
        self,
        data_1: str | Sequence[str],
        data_2: str | Sequence[str],
        /,
        *,
        use_tqdm: bool = False,
        pooling_params: PoolingParams | None = None,
        truncate_prompt_tokens: int | None = None,
        chat_template: str | None = None,
        lora_request: Any = None,
        tokenization_kwargs: dict[str, Any] | None = None,
    ) -> list[ScoringRequestOutput]:
        """Score ``data_1`` against ``data_2`` (1:1, 1:N or N:N), one output per pair, in order."""
        # Refused rather than ignored: a silently dropped template would give wrong scores.
        if chat_template is not None:
            raise InputError(
                "A per-call chat_template is not supported; pass the template when building the "
                "LLM instead: LLM(model=..., template='<bundled name or path>')."
            )
        if lora_request is not None:
            raise InputError("LoRA adapters are not supported by the local engine.")
        if tokenization_kwargs:
            raise InputError(
                "tokenization_kwargs are not supported; use truncate_prompt_tokens=, or "
                "max_length= / max_tokens_per_doc= when building the LLM."
            )
        use_activation = pooling_params.use_activation if pooling_params is not None else None
        results = self.scorer.score(
            data_1, data_2, use_activation=use_activation,
            truncate_prompt_tokens=truncate_prompt_tokens,
        )
        prefix = uuid.uuid4().hex[:8]
        return [
            ScoringRequestOutput(
                request_id=f"score-{prefix}-{r.index}",
                outputs=ScoringOutput(score=r.score),
                num_tokens=r.num_tokens,
                truncated=r.truncated,
            )
            for r in results
        ]
