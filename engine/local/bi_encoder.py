"""Bi-encoder backend: pooled embeddings of query and document, compared by cosine."""

from __future__ import annotations

import torch

from ..calls import ScoreCall, VllmTokenization
from ..config import ScorerConfig
from ..errors import ModelLoadError, UnsupportedScoreType
from ..types import CacheInfo, ScoreResult, ScoreType
from .base import LocalBackend, pair_token_ids
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length, read_json
from .doc_cache import CachedEncoding, encoding_key, make_cache
from .encoder import shared_encoder
from .kernels import run_dense
from .packed import TokenStates
from .pooling import pool_packed
from .runner import Coverage, ProgressFn, RowCache, Stages
from .similarity import cosine
from .tokenizing import distinct
from .weights import load_st_dense

# sentence-transformers' order when several modes are on (their outputs are concatenated).
_LEGACY_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
_SUPPORTED_POOLING = {"cls", "max", "mean", "mean_sqrt_len_tokens", "lasttoken"}


def read_pooling_modes(info: CheckpointInfo) -> tuple[str, ...]:
    """Pooling modes from the ST Pooling config (new ``pooling_mode`` or legacy booleans).

    Without a Pooling module, vLLM's architecture default: CLS for encoders, LAST for causal LMs.
    """
    modules = info.st_modules_of("Pooling")
    if not modules:
        causal = any(a.endswith("ForCausalLM") for a in info.architectures)
        return ("lasttoken",) if causal else ("cls",)
    cfg = read_json(modules[0].path / "config.json")
    if not isinstance(cfg, dict):
        raise ModelLoadError(
            f"{modules[0].path} has no readable config.json for its Pooling module."
        )
    if "pooling_mode" in cfg:
        raw = cfg["pooling_mode"]
        modes = tuple([raw] if isinstance(raw, str) else raw)
    else:
        modes = tuple(name for key, name in _LEGACY_POOLING_KEYS if cfg.get(key))
    unknown = [m for m in modes if m not in _SUPPORTED_POOLING]
    if unknown or not modes:
        raise UnsupportedScoreType(
            f"Pooling {list(modes) or 'none'} in {modules[0].path} is not supported; "
            f"supported: {sorted(_SUPPORTED_POOLING)}."
        )
    return modes


class BiEncoderBackend(LocalBackend):
    """Pool (ST config) → Dense layers → cosine in float32. Each distinct text is encoded once."""

    score_type = ScoreType.BI_ENCODER

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info=info, config=config, device=device, dtype=dtype)
        self._slot = shared_encoder(info, config, device, dtype)
        self.encoder = self._slot.value
        self.pooling_modes = read_pooling_modes(info)
        self.dense = [load_st_dense(m.path).to(device) for m in info.st_modules_of("Dense")]
        self.normalize = bool(info.st_modules_of("Normalize")) or not info.st_modules
        self._max_length = cap_max_length(
            model_max_length(info, self.encoder.tokenizer), config.max_length
        )
        self.doc_cache = make_cache(config.doc_cache_size)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def min_length(self) -> int:
        return int(self.encoder.tokenizer.num_special_tokens_to_add(pair=False)) + 1

    def modules(self) -> list[torch.nn.Module]:
        return [self.encoder.model, *self.dense]

    def cache_info(self) -> CacheInfo | None:
        return None if self.doc_cache is None else self.doc_cache.info()

    def clear_cache(self) -> None:
        if self.doc_cache is not None:
            self.doc_cache.clear()

    # -- head ------------------------------------------------------------------------------------
    def head(self, states: TokenStates, use_activation: bool) -> torch.Tensor:
        """Packed token states [T, H] → sentence embeddings [B, D] in float32.

        Each text is pooled over its own tokens and the Dense layers run through batch-invariant
        kernels, so an embedding does not depend on the other texts of its batch.
        """
        hidden = states.hidden.float()  # head in float32, as vLLM's head_dtype
        emb = torch.cat(
            [pool_packed(hidden, states.lengths, m) for m in self.pooling_modes], dim=-1
        )  # [B, H*k]
        for layer in self.dense:
            emb = run_dense(layer, emb, self.encoder.head_linears)  # [B, D]
        if use_activation and self.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
        return emb

    # -- the call --------------------------------------------------------------------------------
    def embed(
        self, texts: list[str], *, limit: int, overflow: str, use_activation: bool = True,
        progress: ProgressFn | None = None, what: str = "text",
        positions: list[int] | None = None, weights: list[int] | None = None,
        cached: bool = False, vllm: VllmTokenization | None = None, cap: int = 0,
    ) -> tuple[torch.Tensor, Coverage]:
        """Embeddings [N, D] (float32, CPU) of ``texts`` in their order, and which were cut.

        ``positions``: the texts' indices in the call (error messages); ``weights``: the pairs
        each text stands for (progress); ``cached``: go through the document cache; ``vllm``
        and ``cap``: tokenize by vLLM's rules, texts cut to ``cap`` tokens first.
        """
        where = positions if positions is not None else list(range(len(texts)))
        stages: Stages[torch.Tensor] = Stages(
            prepare=lambda items: self.encoder.tokenize(
                [texts[i] for i in items], limit=limit, overflow=overflow, what=what,
                positions=[where[i] for i in items], vllm=vllm, cap=cap,
            ),
            forward=self.encoder.forward,
            head=lambda states, _: self.head(states, use_activation),
            packed=self.encoder.packed,
        )
        cache = None
        if cached and self.doc_cache is not None and vllm is None:
            cache = RowCache(
                cache=self.doc_cache,
                keys=[encoding_key(t, limit=limit, overflow=overflow,
                                   use_activation=use_activation) for t in texts],
                # clone(): a row view would keep the whole [B, D] block alive in the cache.
                split=lambda emb, _: [(row.clone(), None) for row in emb.float().cpu()],
                join=_stack_rows,
            )
        return self.runner.rows(
            len(texts), stages, weights=weights, progress=progress, cache=cache,
            keep_ids=vllm is not None and vllm.keep_token_ids,
        )

    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        limit, overflow = self.text_limit(call)
        # Each distinct query is encoded once, however many documents it is paired with, and
        # so is each distinct document (and, with the document cache, each one seen before).
        queries, query_index, q_first = distinct(call.queries, call.query_index)
        vllm = call.vllm
        q_emb, q_cov = self.embed(
            queries, limit=limit, overflow=overflow, use_activation=call.activation,
            what="query", positions=q_first, vllm=vllm,
            cap=vllm.max_tokens_per_query if vllm else 0,
        )
        texts, doc_slot, d_first = distinct(call.documents, list(range(len(call.documents))))
        d_emb, d_cov = self.embed(
            texts, limit=limit, overflow=overflow, use_activation=call.activation,
            progress=progress, what="document", positions=d_first,
            weights=_counts(doc_slot, len(texts)), cached=True, vllm=vllm,
            cap=vllm.max_tokens_per_doc if vllm else 0,
        )
        scores = cosine(q_emb[query_index], d_emb[doc_slot])  # [N]
        return [
            ScoreResult(
                index=k,
                score=float(scores[k]),
                truncated=q_cov.truncated[q] or d_cov.truncated[doc_slot[k]],
                num_tokens=q_cov.num_tokens[q] + d_cov.num_tokens[doc_slot[k]],
                query_tokens=q_cov.num_tokens[q],
                prompt_token_ids=pair_token_ids(q_cov.input_ids, d_cov.input_ids, q,
                                                doc_slot[k], self.encoder.tokenizer.pad_token_id),
            )
            for k, q in enumerate(query_index)
        ]

    def embed_texts(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """Sentence embeddings [N, D] exactly as the score path makes them, and which were cut.

        The entry point of ``Scorer.embed``: the model's own limit and the configured overflow.
        """
        emb, coverage = self.embed(texts, limit=self._max_length, overflow=self.config.overflow)
        return emb, coverage.truncated


def _stack_rows(entries: list[CachedEncoding]) -> torch.Tensor:
    return torch.stack([e.value for e in entries])  # [B, D]


def _counts(slots: list[int], n: int) -> list[int]:
    """How many pairs each of ``n`` distinct texts stands for (progress counts pairs)."""
    counts = [0] * n
    for s in slots:
        counts[s] += 1
    return counts
