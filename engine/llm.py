"""vLLM's offline scoring surface: ``LLM(model=..., runner="pooling").score(data_1, data_2)``.

Code written for vLLM's ``LLM.score`` runs unchanged and gets vLLM's answers, refusals and
error texts (vLLM 0.32/0.33, recorded in tests/golden/vllm/)::

    llm = LLM(model="path/to/reranker", runner="pooling")
    (output,) = llm.score("What is the capital of France?", "Paris is the capital of France.")
    print(output.outputs.score)

As vLLM: the score type comes from the architecture (``*ForSequenceClassification`` scores
pairs, ``HF_ColBERT`` token vectors, a plain encoder pooled vectors; ``pooler_config`` or
``convert`` pick another); a score template applies only when one is given (``chat_template``
at load or per call); input over ``max_model_len`` is refused unless ``tokenization_kwargs``
ask for truncation; engine arguments that only steer vLLM's scheduler are accepted and have no
effect here, those that would change a score are honoured or refused. Where we differ on
purpose, the README's table says why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .calls import VllmTokenization
from .errors import InputError
from .pairing import check_text
from .scorer import Scorer
from .types import ScoreResult, ScoreType
from .vllm_args import ENGINE_ARGS

__all__ = ["LLM", "PoolingParams", "ScoringOutput", "ScoringRequestOutput"]

logger = logging.getLogger("engine")

# Engine arguments that change what is computed, each handled below; the rest of vLLM's
# EngineArgs steer its scheduler, memory or parallelism and are accepted with no effect.
_SCORE_CHANGING = frozenset({
    "runner", "convert", "tokenizer", "dtype", "max_model_len", "hf_overrides", "revision",
    "trust_remote_code", "pooler_config", "quantization", "kv_cache_dtype",
    "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "skip_tokenizer_init",
})
# The values of those that change nothing here (one process, no quantization).
_NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "quantization": (None,), "kv_cache_dtype": ("auto",), "tensor_parallel_size": (1,),
    "pipeline_parallel_size": (1,), "data_parallel_size": (1,), "skip_tokenizer_init": (False,),
}
_DTYPES = {"auto": "auto", "half": "float16", "float16": "float16", "bfloat16": "bfloat16",
           "float": "float32", "float32": "float32"}
_CONVERT = {"classify": ScoreType.CROSS_ENCODER, "embed": ScoreType.BI_ENCODER,
            "token_embed": ScoreType.LATE_INTERACTION}
_TASK_PARAMS = {ScoreType.CROSS_ENCODER: ("classify", ["use_activation"]),
                ScoreType.BI_ENCODER: ("embed", ["use_activation"]),
                ScoreType.LATE_INTERACTION: ("token_embed", ["use_activation"])}


@dataclass(frozen=True, kw_only=True)
class PoolingParams:
    """vLLM's ``PoolingParams``: the fields scoring reads, and the rest so code passes them.

    ``use_activation``: False for raw logits / unnormalised similarities. ``extra_kwargs``:
    ``max_tokens_per_query`` / ``max_tokens_per_doc`` (cut texts before pairing) and
    ``chat_template_kwargs`` (template variables such as ``instruction``).
    """

    use_activation: bool | None = None
    dimensions: int | None = None
    step_tag_id: int | None = None
    returned_token_ids: list[int] | None = None
    task: str | None = None
    requires_token_ids: bool = False
    skip_reading_prefix_cache: bool | None = None
    late_interaction_params: Any = None
    extra_kwargs: dict[str, Any] | None = None
    output_kind: Any = None

    def clone(self) -> PoolingParams:
        return dataclasses.replace(self)


@dataclass(frozen=True)
class ScoringOutput:
    """vLLM's ``ScoringOutput``: one scalar score."""

    score: float


@dataclass(frozen=True)
class ScoringRequestOutput:
    """vLLM's ``ScoringRequestOutput``: ``.outputs.score`` holds the value."""

    request_id: str
    outputs: ScoringOutput
    prompt_token_ids: list[int]
    num_cached_tokens: int
    finished: bool
    error: Any = dataclasses.field(default=None, kw_only=True)


class LLM:
    """The scoring part of ``vllm.LLM``, backed by the local engine.

    Takes vLLM's arguments; ``model`` is a local folder or a cached hub id. ``chat_template``
    is the score template of LLM rerankers (a bundled name such as ``qwen3_reranker``, a
    ``.jinja`` path or jinja source).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        runner: str = "auto",
        convert: str = "auto",
        tokenizer: str | None = None,
        trust_remote_code: bool = False,
        dtype: str = "auto",
        revision: str | None = None,
        chat_template: str | None = None,
        hf_overrides: Mapping[str, Any] | None = None,
        pooler_config: Any = None,
        max_model_len: int | None = None,
        **kwargs: Any,
    ) -> None:
        # LoRA (vLLM's engine arguments): adapters come per call as score(lora_request=...);
        # max_loras / max_cpu_loras size vLLM's GPU/CPU caches, which one process doesn't have.
        self._enable_lora = bool(kwargs.pop("enable_lora", False))
        max_lora_rank = kwargs.pop("max_lora_rank", None)
        for name, value in kwargs.items():
            if name not in ENGINE_ARGS:
                raise TypeError(f"LLM() got an unexpected keyword argument {name!r}")
            neutral = _NEUTRAL_VALUES.get(name)
            if neutral is not None and value not in neutral:
                raise InputError(
                    f"{name}={value!r} is not supported by the local engine (one process, "
                    f"full precision weights); use {neutral[0]!r} or leave it unset."
                )
        logger.debug("vLLM engine arguments with no local effect: %s",
                     sorted(set(kwargs) - _SCORE_CHANGING))
        if runner not in ("auto", "pooling"):
            raise InputError(
                f"Embedding models do not support `--runner {runner}`. Use `--runner pooling` "
                "or `--runner auto` for embedding models (this LLM only scores)."
            )
        path = os.fspath(model)
        if tokenizer is not None and os.path.abspath(tokenizer) != os.path.abspath(path):
            raise InputError(
                f"tokenizer={tokenizer!r} differs from the model folder; the local engine "
                "reads the model's own tokenizer. Leave tokenizer unset."
            )
        if dtype not in _DTYPES:
            raise InputError(
                f"dtype={dtype!r}: input should be 'auto', 'half', 'float16', 'bfloat16', "
                "'float' or 'float32'."
            )
        score_type, use_activation = _pooler_choice(convert, pooler_config)
        self.default_use_activation = use_activation
        self.scorer = Scorer.load(
            path, score_type=score_type or _score_type_of(path, hf_overrides),
            dtype=_DTYPES[dtype], trust_remote_code=trust_remote_code, revision=revision,
            hf_overrides=hf_overrides, auto_template=False, enable_lora=self._enable_lora,
            **({"max_lora_rank": max_lora_rank} if max_lora_rank is not None else {}),
        )
        if chat_template is not None:
            # vLLM's LLM.score reads only its own chat_template argument, never the LLM's.
            logger.warning(
                "LLM(chat_template=...) is not used by LLM.score, as in vLLM: pass "
                "chat_template= to score() for the score template."
            )
        limit = self.scorer.max_model_len
        if max_model_len is not None:
            if max_model_len > limit:
                raise InputError(
                    f"User-specified max_model_len ({max_model_len}) is greater than the "
                    f"derived max_model_len ({limit}) of {path}."
                )
            limit = max_model_len
        self.max_model_len = limit
        self._next_id = 0

    # -- scoring ---------------------------------------------------------------------------------
    def score(
        self,
        data_1: Any,
        data_2: Any,
        /,
        *,
        use_tqdm: bool | Callable[..., Any] = True,
        pooling_params: PoolingParams | None = None,
        lora_request: Any = None,
        tokenization_kwargs: dict[str, Any] | None = None,
        chat_template: str | None = None,
    ) -> list[ScoringRequestOutput]:
        """Score ``data_1`` against ``data_2`` (1:1, 1:N or N:N), one output per pair, in order.

        Raises, as vLLM: a pairing error, "MultiModalParam is not supported for <arch>" for a
        ``{"content": [...]}`` input to a text model, the context-length error for input over
        ``max_model_len`` (unless ``tokenization_kwargs`` truncate), and the PoolingParams
        checks.
        """
        scorer = self.scorer
        if scorer.score_type is ScoreType.CROSS_ENCODER and scorer.num_labels != 1:
            raise InputError("Scoring API is only enabled for num_labels == 1.")
        if lora_request is not None and not self._enable_lora:
            raise InputError(f"Got lora_request {lora_request} but LoRA is not enabled!")
        queries, documents = self._inputs(data_1), self._inputs(data_2)
        if len(queries) > 1 and len(queries) != len(documents):
            raise InputError("Input lengths must be either 1:1, 1:N or N:N")
        if pooling_params is None:
            pooling_params = PoolingParams()
        if not isinstance(pooling_params, PoolingParams):
            # vLLM: a bare `assert isinstance(pooling_params, PoolingParams)`.
            raise InputError(
                f"pooling_params must be a PoolingParams (from engine import PoolingParams), "
                f"got {type(pooling_params).__name__}."
            )
        use_activation = self._check_pooling(pooling_params)
        params = self._tokenization(tokenization_kwargs, pooling_params, chat_template)
        results = self._run(queries, documents, use_activation, params, use_tqdm, lora_request)
        return self._outputs(results, n_queries=len(queries))

    # -- the pieces of a call --------------------------------------------------------------------
    def _inputs(self, data: Any) -> list[Any]:
        if self.scorer.accepts_media:  # Qwen3-VL / jina-m0: strings and {"content": [...]}
            from .media import parse_score_items

            return parse_score_items(data, side="data")
        items = data if isinstance(data, list) else [data]
        for i, item in enumerate(items):
            if not isinstance(item, str):
                if isinstance(item, Mapping):
                    raise InputError(f"MultiModalParam is not supported for {self._arch()}")
                raise InputError(f"data[{i}] is {type(item).__name__}, not str.")
            check_text(item, where=f"data[{i}]")
        return list(items)

    def _arch(self) -> str:
        architectures = getattr(self.scorer, "architectures", ())
        return architectures[0] if architectures else "this model"

    def _check_pooling(self, params: PoolingParams) -> bool | None:
        task, allowed = _TASK_PARAMS[self.scorer.score_type]
        if params.task is not None and params.task != task:
            raise InputError(
                f"You cannot overwrite pooling_params.task={params.task!r} with "
                f"pooling_task={task!r}!"
            )
        if params.dimensions is not None:
            if self.scorer.score_type is ScoreType.CROSS_ENCODER:
                raise InputError(f"Task {task!r} only supports {allowed} parameters, does not "
                                 "support ['dimensions'] parameters")
            raise InputError(
                f"Model {self.scorer.model!r} does not support Matryoshka embeddings; "
                f"dimensions must be unset (received dimensions={params.dimensions})."
            )
        if params.use_activation is not None:
            return params.use_activation
        return self.default_use_activation

    def _tokenization(
        self, kwargs: dict[str, Any] | None, params: PoolingParams, template: str | None
    ) -> VllmTokenization:
        """vLLM's TokenizeParams.with_kwargs, and the per-call caps of its extra_kwargs."""
        kw = dict(kwargs or {})
        limit = self.max_model_len
        max_length = kw.pop("max_length", limit)
        truncate = kw.pop("truncate_prompt_tokens", None)
        side = kw.pop("truncation_side", None)
        pad_to = kw.pop("pad_prompt_tokens", None)
        if kw.pop("padding", None) == "max_length":
            pad_to = max_length
        truncation = kw.pop("truncation", None)
        if truncation in (True, "longest_first"):
            truncate = max_length
        elif truncation in (False, "do_not_truncate"):
            truncate = None
        if kw:
            logger.warning("The following tokenization arguments are not supported and will be "
                           "ignored: %s", kw)
        if side not in (None, "left", "right"):
            raise InputError("`truncation_side` must be either 'left' or 'right'.")
        if truncate is not None and truncate > limit:
            raise InputError(
                f"truncate_prompt_tokens={truncate} cannot be greater than max_total_tokens = "
                f"{limit}. Please request a smaller truncation size."
            )
        if truncate is not None and truncate < 0:
            truncate = limit
        if truncate is not None and truncate < self.scorer.min_length:
            raise InputError(
                f"truncate_prompt_tokens={truncate} is below {self.scorer.min_length}, the fewest "
                "tokens this model's inputs can be cut to (its special tokens plus one token of "
                "text)."
            )
        if pad_to is not None and pad_to < 0:
            pad_to = limit
        extra = dict(params.extra_kwargs or {})
        caps = {}
        for name in ("max_tokens_per_query", "max_tokens_per_doc"):
            value = extra.get(name, 0)
            if value < 0:
                raise InputError(f"{name} must be a non-negative integer")
            if value >= limit:
                raise InputError(f"{name} ({value}) must be less than max_model_len ({limit}).")
            caps[name] = value
        template_kwargs = extra.get("chat_template_kwargs") or {}
        return VllmTokenization(
            max_model_len=limit, truncate=truncate, side=side, pad_to=pad_to,
            template=template, template_kwargs=tuple(sorted(template_kwargs.items())),
            keep_token_ids=True, **caps,
        )

    def _run(self, queries: list[str], documents: list[str], use_activation: bool | None,
             params: VllmTokenization, use_tqdm: bool | Callable[..., Any],
             lora_request: Any = None) -> list[ScoreResult]:
        bar = None
        if use_tqdm and documents:
            from tqdm import tqdm  # type: ignore[import-untyped]

            make = use_tqdm if callable(use_tqdm) else tqdm
            bar = make(total=len(documents), desc="Processed prompts", dynamic_ncols=True)
        try:
            return self.scorer._score_vllm(
                queries, documents, use_activation=use_activation, tokenization=params,
                progress=bar.update if bar is not None else None, lora_request=lora_request,
            )
        finally:
            if bar is not None:
                bar.close()

    def _outputs(self, results: list[ScoreResult], *, n_queries: int) -> list[ScoringRequestOutput]:
        """vLLM's request ids: one counter per LLM; a cross-encoder pair is one request, while
        two encodings make the id ``query-id_document-id`` (every query, then every document)."""
        start = self._next_id
        two_sided = self.scorer.score_type is not ScoreType.CROSS_ENCODER
        self._next_id += len(results) + (n_queries if two_sided else 0)
        out = []
        for k, r in enumerate(results):
            if two_sided:
                q = start + (0 if n_queries == 1 else k)
                rid = f"{q}_{start + n_queries + k}"
            else:
                rid = str(start + k)
            out.append(ScoringRequestOutput(
                rid, ScoringOutput(score=r.score), list(r.prompt_token_ids or ()), 0, True,
            ))
        return out


def _pooler_choice(convert: str, pooler_config: Any) -> tuple[ScoreType | None, bool | None]:
    """(score type, default use_activation) from ``convert`` and ``pooler_config``."""
    config = pooler_config if isinstance(pooler_config, Mapping) or pooler_config is None \
        else vars(pooler_config)
    config = dict(config or {})
    task = config.pop("task", None)
    use_activation = config.pop("use_activation", None)
    unknown = sorted(k for k, v in config.items() if v is not None)
    if unknown:
        raise InputError(
            f"pooler_config {unknown} would change how scores are pooled, which the local engine "
            "does not support; the checkpoint's own pooling is used. Remove them."
        )
    for key in (task, None if convert == "auto" else convert):
        if key is not None:
            if key not in _CONVERT:
                raise InputError(f"convert/task={key!r} is not a scoring task; use one of "
                                 f"{sorted(_CONVERT)}.")
            return _CONVERT[key], use_activation
    return None, use_activation


def _score_type_of(path: str, hf_overrides: Mapping[str, Any] | None) -> ScoreType | None:
    """vLLM's choice from the architecture: a plain encoder is an embedding model (pooled),
    whatever sentence-transformers or PyLate files sit beside it; None lets the loader decide."""
    from .local.checkpoint import inspect_checkpoint, resolve_model_path
    from .local.conversion import apply_hf_overrides

    info = apply_hf_overrides(inspect_checkpoint(resolve_model_path(path)), hf_overrides)
    if info.has_classification_head:
        return ScoreType.CROSS_ENCODER
    if any(a.startswith(("HF_ColBERT", "ColBERT")) for a in info.architectures):
        return ScoreType.LATE_INTERACTION
    if info.architectures and all(a.endswith("Model") for a in info.architectures):
        return None if info.late_interaction_format == "bge-m3" else ScoreType.BI_ENCODER
    return None
