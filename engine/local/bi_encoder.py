"""Bi-encoder backend: pooled embeddings of query and document, compared by cosine."""

from __future__ import annotations

import torch

from ..config import ScorerConfig
from ..errors import ModelLoadError, UnsupportedScoreType
from ..types import ScoreResult, ScoreType
from .base import LocalBackend, ProgressFn, cap_max_length, distinct
from .batching import windows
from .doc_cache import CachedEncoding, encoding_key, make_cache
from .encoder import load_st_dense, shared_encoder
from .loading import CheckpointInfo, _read_json, model_max_length
from .pooling import pool
from .similarity import cosine

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
    cfg = _read_json(modules[0].path / "config.json")
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
    """Pool (ST config) → Dense layers → cosine in float32. Each unique text is encoded once."""

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

    def _head(self, hidden: torch.Tensor, mask: torch.Tensor, use_activation: bool) -> torch.Tensor:
        """Token states [B, L, H] → sentence embeddings [B, D] in float32."""
        hidden = hidden.float()  # head in float32, as vLLM's head_dtype
        emb = torch.cat([pool(hidden, mask, m) for m in self.pooling_modes], dim=-1)  # [B, H*k]
        with torch.inference_mode():
            for layer in self.dense:
                emb = layer(emb)  # [B, D]
        if use_activation and self.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
        return emb

    def embed(
        self, texts: list[str], *, limit: int, overflow: str, use_activation: bool = True,
        progress: ProgressFn | None = None, what: str = "text",
        positions: list[int] | None = None,
    ) -> tuple[torch.Tensor, list[bool], list[int]]:
        """Embeddings [N, D] (float32, CPU) of ``texts`` in their order, which were cut, and
        their token counts. ``positions``: the texts' indices in the call (error messages)."""
        out: torch.Tensor | None = None
        cut: list[bool] = []
        lengths: list[int] = []
        # A window at a time, so token ids of 10,000 texts are never all held at once.
        for lo, hi in windows(len(texts)):
            where = positions[lo:hi] if positions is not None else list(range(lo, hi))
            tok = self.encoder.tokenize(
                texts[lo:hi], limit=limit, overflow=overflow, what=what, positions=where
            )
            for batch in self.encoder.batches(
                tok.input_ids, max_batch_size=self.config.batch_size,
                max_tokens_per_batch=self.config.max_tokens_per_batch, call_items=len(texts),
            ):
                emb = self._head(batch.hidden, batch.mask, use_activation).cpu()  # [B, D]
                if out is None:
                    out = torch.empty((len(texts), emb.shape[-1]), dtype=torch.float32)
                out[[lo + i for i in batch.indices]] = emb
                if progress is not None:
                    progress(len(batch.indices))
            cut += tok.truncated
            lengths += [len(s) for s in tok.input_ids]
        assert out is not None
        return out, cut, lengths

    def score_pairs(
        self,
        queries: list[str],
        documents: list[str],
        query_index: list[int],
        *,
        use_activation: bool,
        truncate_prompt_tokens: int | None,
        progress: ProgressFn | None = None,
    ) -> list[ScoreResult]:
        limit = truncate_prompt_tokens or self._max_length
        overflow = "truncate" if truncate_prompt_tokens else self.config.overflow
        # Each distinct query is encoded once, however many documents it is paired with.
        queries, query_index, q_first = distinct(queries, query_index)
        q_emb, q_cut, q_len = self.embed(queries, limit=limit, overflow=overflow,
                                         use_activation=use_activation, what="query",
                                         positions=q_first)
        # Identical documents are encoded once.
        unique: dict[str, int] = {}
        doc_slot = [unique.setdefault(d, len(unique)) for d in documents]
        first_seen = [0] * len(unique)
        for k in reversed(range(len(documents))):
            first_seen[doc_slot[k]] = k
        d_emb, d_cut, d_len = self._document_embeddings(
            list(unique), first_seen, limit=limit, overflow=overflow,
            use_activation=use_activation, progress=progress,
        )
        scores = cosine(q_emb[query_index], d_emb[doc_slot])  # [N]
        return [
            ScoreResult(
                index=k,
                score=float(scores[k]),
                truncated=q_cut[q] or d_cut[doc_slot[k]],
                num_tokens=q_len[q] + d_len[doc_slot[k]],
                query_tokens=q_len[q],
            )
            for k, q in enumerate(query_index)
        ]

    def _document_embeddings(
        self, texts: list[str], positions: list[int], *, limit: int, overflow: str,
        use_activation: bool, progress: ProgressFn | None,
    ) -> tuple[torch.Tensor, list[bool], list[int]]:
        """Embeddings [U, D] of distinct documents, which were cut, and their token counts.

        With a document cache, documents encoded before (same text, limit, overflow rule and
        use_activation) are taken from it and only the others go through the model.
        """
        cache = self.doc_cache
        if cache is None:
            return self.embed(texts, limit=limit, overflow=overflow,
                              use_activation=use_activation, progress=progress,
                              what="document", positions=positions)
        keys = [
            encoding_key(t, limit=limit, overflow=overflow, use_activation=use_activation)
            for t in texts
        ]
        entries = [cache.get(key) for key in keys]
        miss = [u for u, entry in enumerate(entries) if entry is None]
        if miss:
            emb, cut, lengths = self.embed(
                [texts[u] for u in miss], limit=limit, overflow=overflow,
                use_activation=use_activation, progress=progress, what="document",
                positions=[positions[u] for u in miss],
            )
            for j, u in enumerate(miss):
                # clone(): a row view would keep the whole [M, D] block alive in the cache.
                entry = CachedEncoding(value=emb[j].clone(), mask=None,
                                       truncated=cut[j], num_tokens=lengths[j])
                entries[u] = entry
                cache.put(keys[u], entry)
        if progress is not None and len(miss) < len(texts):
            progress(len(texts) - len(miss))
        done = [e for e in entries if e is not None]
        return (
            torch.stack([e.value for e in done]),  # [U, D]
            [e.truncated for e in done],
            [e.num_tokens for e in done],
        )

    def embed_texts(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """Sentence embeddings [N, D] exactly as the score path makes them, and which were cut.

        The entry point of ``Scorer.embed``: the model's own limit and the configured overflow.
        """
        emb, cut, _ = self.embed(texts, limit=self._max_length, overflow=self.config.overflow)
        return emb, cut
