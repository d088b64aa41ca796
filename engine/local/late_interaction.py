"""Late-interaction backend: per-token embeddings (projected, L2-normalised), scored by MaxSim."""

from __future__ import annotations

import string
from typing import Any

import torch

from ..config import ScorerConfig
from ..errors import ModelLoadError
from ..types import ScoreResult, ScoreType
from .base import LocalBackend, ProgressFn, Tokenized, cap_max_length, distinct
from .batching import (
    pad,
    plan_batches,
    release_after_each_batch,
    release_freed_memory,
    windows,
)
from .doc_cache import CachedEncoding, encoding_key, make_cache
from .encoder import load_st_dense, load_state_dict, shared_encoder
from .loading import CheckpointInfo, model_max_length
from .packed import use_packed
from .similarity import maxsim, normalize_tokens


def load_projection(info: CheckpointInfo) -> tuple[torch.nn.Module | None, str | None]:
    """The checkpoint's token projection and its format, or (None, None) for raw hidden states.

    Formats: PyLate/ST ``Dense`` modules; colbert-ir ``linear.weight`` (no bias) in
    model.safetensors; BGE-M3 ``colbert_linear.pt`` (hidden→hidden, with bias).
    """
    fmt = info.late_interaction_format
    if fmt == "st-dense":
        dense = [load_st_dense(m.path) for m in info.st_modules_of("Dense")]
        return torch.nn.Sequential(*dense), fmt
    if fmt == "colbert-linear":
        from safetensors import safe_open

        with safe_open(str(info.path / "model.safetensors"), framework="pt") as f:
            weight = f.get_tensor("linear.weight")  # [dim, hidden]
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        linear.weight.data.copy_(weight)
        return linear, fmt
    if fmt == "bge-m3":
        state = load_state_dict(info.path / "colbert_linear.pt")
        if "weight" not in state:
            raise ModelLoadError(f"{info.path / 'colbert_linear.pt'} has no 'weight' tensor.")
        weight = state["weight"]
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
        linear.load_state_dict(state)
        return linear, fmt
    return None, None


class LateInteractionBackend(LocalBackend):
    """Tokens → last hidden states → projection → per-token L2 norm → MaxSim (vLLM's maths).

    By default no ColBERT markers or query augmentation are added (vLLM adds none); with
    ``colbert_markers=True`` queries get a [Q] marker and [MASK] padding to ``query_length`` and
    documents a [D] marker with punctuation left out of the MaxSim, as PyLate/colbert-ir do.
    """

    score_type = ScoreType.LATE_INTERACTION

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info=info, config=config, device=device, dtype=dtype)
        self._slot = shared_encoder(info, config, device, dtype)
        self.encoder = self._slot.value
        projection, self.projection_format = load_projection(info)
        self.projection = projection.to(device) if projection is not None else None
        # BGE-M3's ColBERT vectors leave out the BOS row (vLLM's BOSEOSFilter).
        self.drop_bos = self.projection_format == "bge-m3"
        self._max_length = cap_max_length(
            model_max_length(info, self.encoder.tokenizer), config.max_length
        )
        if config.colbert_markers:
            self._init_markers()
        self.doc_cache = make_cache(config.doc_cache_size)

    @property
    def max_length(self) -> int:
        return self._max_length

    def _init_markers(self) -> None:
        tok = self.encoder.tokenizer
        vocab = tok.get_vocab()
        markers = []
        # PyLate stores the prefixes as added tokens "[Q] "/"[D] "; colbert-ir uses [unused0/1].
        for key, default in (("query_prefix", "[unused0]"), ("document_prefix", "[unused1]")):
            marker = str(self.info.st_config.get(key, default))
            token = marker if marker in vocab else marker.strip()
            if token not in vocab:
                raise ModelLoadError(
                    f"colbert_markers=True needs the marker token {marker!r} in the vocabulary "
                    f"of {self.info.path}; this tokenizer has no such token."
                )
            markers.append(vocab[token])
        if tok.mask_token_id is None:
            raise ModelLoadError(
                "colbert_markers=True needs a [MASK] token for query augmentation."
            )
        self.query_marker, self.doc_marker = markers
        self.skip_ids = {
            i for ch in string.punctuation
            for i in tok(ch, add_special_tokens=False)["input_ids"][:1]
        }

    # -- prepare ---------------------------------------------------------------------------------
    def _tokenize(
        self, texts: list[str], *, limit: int, overflow: str, query: bool,
        positions: list[int] | None = None,
    ) -> Tokenized:
        if not self.config.colbert_markers:
            plain: Tokenized = self.encoder.tokenize(
                texts, limit=limit, overflow=overflow, what="query" if query else "document",
                positions=positions,
            )
            return plain
        # Room for the marker inserted after the first special token.
        length = min(self.config.query_length, limit) if query else limit
        tok = self.encoder.tokenize(
            texts, limit=length - 1, overflow="truncate" if query else overflow,
            what="query" if query else "document", positions=positions,
        )
        marker = self.query_marker if query else self.doc_marker
        ids = [seq[:1] + [marker] + seq[1:] for seq in tok.input_ids]
        return Tokenized(input_ids=ids, token_type_ids=None, truncated=tok.truncated)

    # -- forward ---------------------------------------------------------------------------------
    def _vectors(
        self, hidden: torch.Tensor, mask: torch.Tensor, use_activation: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states [B, L, H] → token vectors [B, L, D] (float32) and scoring mask [B, L]."""
        vectors = hidden.float()
        if self.projection is not None:
            with torch.inference_mode():
                vectors = self.projection(vectors)  # [B, L, D]
        if use_activation:
            vectors = normalize_tokens(vectors)
        mask = mask.clone()
        if self.drop_bos:
            mask[:, 0] = 0
        return vectors, mask

    def _encode_queries(
        self, ids: list[list[int]], use_activation: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query token vectors [Q, Lq, D] and scoring masks [Q, Lq], in input order."""
        if self.config.colbert_markers:
            return self._encode_augmented_queries(ids, use_activation)
        width = max(len(s) for s in ids)
        out_v: torch.Tensor | None = None
        out_m = torch.zeros((len(ids), width), dtype=torch.long, device=self.device)
        for batch in self.encoder.batches(
            ids, max_batch_size=self.config.batch_size,
            max_tokens_per_batch=self.config.max_tokens_per_batch,
        ):
            v, m = self._vectors(batch.hidden, batch.mask, use_activation)
            if out_v is None:
                out_v = torch.zeros((len(ids), width, v.shape[-1]), device=self.device)
            out_v[batch.indices, : v.shape[1]] = v
            out_m[batch.indices, : m.shape[1]] = m
        assert out_v is not None
        return out_v, out_m

    def _encode_augmented_queries(
        self, ids: list[list[int]], use_activation: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # ColBERT query augmentation: pad with [MASK] to query_length; the model doesn't attend to
        # the expansion tokens, but their output vectors take part in MaxSim.
        length = max(self.config.query_length, max(len(s) for s in ids))
        mask_id = int(self.encoder.tokenizer.mask_token_id)
        input_ids = torch.full((len(ids), length), mask_id, dtype=torch.long)
        attention = torch.zeros((len(ids), length), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.as_tensor(seq)
            attention[row, : len(seq)] = 1
        kwargs = {
            "input_ids": input_ids.to(self.device), "attention_mask": attention.to(self.device)
        }
        if self.encoder._uses_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(kwargs["input_ids"])
        with torch.inference_mode():
            hidden = self.encoder.model(**kwargs).last_hidden_state
        v, _ = self._vectors(hidden, attention.to(self.device), use_activation)
        return v, torch.ones_like(attention, device=self.device)

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
        q_tok = self._tokenize(queries, limit=limit, overflow=overflow, query=True,
                               positions=q_first)
        # Identical documents are encoded once; with a document cache, so are documents seen in
        # earlier calls (same text, limit, overflow rule and use_activation).
        where: dict[str, list[int]] = {}
        for k, d in enumerate(documents):
            where.setdefault(d, []).append(k)
        texts = list(where)
        q_vec, q_mask = self._encode_queries(q_tok.input_ids, use_activation)  # [Q, Lq, D]
        scores = [0.0] * len(documents)
        lengths: list[int] = []
        doc_cut: list[bool] = []
        # A window of distinct documents at a time, so token ids of 10,000 documents are never
        # all held at once. Windows, and the plan in each, depend on the documents alone, so a
        # call that finds everything in the cache batches exactly as the call that filled it and
        # gives bit-identical scores.
        for lo, hi in windows(len(texts)):
            keys = [
                encoding_key(t, limit=limit, overflow=overflow, use_activation=use_activation)
                for t in texts[lo:hi]
            ]
            cache = self.doc_cache
            entries = [cache.get(key) if cache is not None else None for key in keys]
            miss = [u for u, entry in enumerate(entries) if entry is None]
            fresh: dict[int, tuple[list[int], bool]] = {}
            if miss:
                tok = self._tokenize(
                    [texts[lo + u] for u in miss], limit=limit, overflow=overflow, query=False,
                    positions=[where[texts[lo + u]][0] for u in miss],
                )
                fresh = {u: (tok.input_ids[j], tok.truncated[j]) for j, u in enumerate(miss)}
            sizes = [e.num_tokens if e is not None else len(fresh[u][0])
                     for u, e in enumerate(entries)]
            lengths += sizes
            doc_cut += [e.truncated if e is not None else fresh[u][1]
                        for u, e in enumerate(entries)]
            packed = use_packed(self.encoder.packed, sizes)
            plan = plan_batches(
                sizes, max_batch_size=self.config.batch_size,
                max_tokens_per_batch=self.config.max_tokens_per_batch, padded=not packed,
            )
            release = release_after_each_batch(len(texts), len(plan))
            if release and miss:  # what the tokenizer freed
                release_freed_memory()
            for batch in plan:
                # Decided before _document_vectors fills ``entries`` in: did the model run?
                encoded = any(entries[u] is None for u in batch)
                d_vec, d_mask = self._document_vectors(
                    batch, entries, fresh, keys, packed=packed, use_activation=use_activation
                )  # [B, Ld, D], [B, Ld]
                pairs = [k for u in batch for k in where[texts[lo + u]]]
                rows = torch.as_tensor([query_index[k] for k in pairs], device=self.device)
                if len(pairs) != len(batch):  # a document repeated within the call
                    drows = torch.as_tensor(
                        [j for j, u in enumerate(batch) for _ in where[texts[lo + u]]],
                        device=self.device,
                    )
                    d_vec, d_mask = d_vec[drows], d_mask[drows]
                # One batched MaxSim for the whole batch; for 1:N, q_vec[rows] is the same query.
                values = maxsim(q_vec[rows], d_vec, q_mask[rows], d_mask)  # [P]
                for k, v in zip(pairs, values.tolist(), strict=True):
                    scores[k] = float(v)
                if progress is not None:
                    progress(len(pairs))
                del d_vec, d_mask
                if release and encoded:  # a batch served from the cache freed nothing
                    release_freed_memory()
        slot = {t: u for u, t in enumerate(texts)}
        return [
            ScoreResult(
                index=k,
                score=scores[k],
                truncated=q_tok.truncated[q] or doc_cut[slot[documents[k]]],
                num_tokens=len(q_tok.input_ids[q]) + lengths[slot[documents[k]]],
                query_tokens=len(q_tok.input_ids[q]),
            )
            for k, q in enumerate(query_index)
        ]

    def _document_vectors(
        self, batch: list[int], entries: list[CachedEncoding | None],
        fresh: dict[int, tuple[list[int], bool]], keys: list[Any], *, packed: bool,
        use_activation: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token vectors [B, Ld, D] and scoring masks [B, Ld] of one batch of distinct documents.

        Documents not in the cache go through the model (and into the cache); cached ones are
        padded back into the batch with zeros, which their mask leaves out of MaxSim.
        """
        todo = [u for u in batch if entries[u] is None]
        if todo:
            ids = [fresh[u][0] for u in todo]
            hidden, mask = self.encoder.run(ids, packed=packed)  # [M, L, H], [M, L]
            new_vec, new_mask = self._vectors(hidden, mask, use_activation)  # [M, L, D]
            if self.config.colbert_markers:
                new_mask = self._skip_punctuation(ids, new_mask)
            if len(todo) == len(batch) and self.doc_cache is None:
                return new_vec, new_mask
            for j, u in enumerate(todo):
                n = len(ids[j])
                # clone(): a slice would keep the whole batch tensor alive in the cache.
                entry = CachedEncoding(
                    value=new_vec[j, :n].clone(), mask=new_mask[j, :n].clone(),
                    truncated=fresh[u][1], num_tokens=n,
                )
                entries[u] = entry
                if self.doc_cache is not None:
                    self.doc_cache.put(keys[u], entry)
        done = [entries[u] for u in batch]
        vec = torch.nn.utils.rnn.pad_sequence(
            [e.value for e in done if e is not None], batch_first=True
        )  # [B, Ld, D]
        mask = torch.nn.utils.rnn.pad_sequence(
            [e.mask for e in done if e is not None and e.mask is not None], batch_first=True
        )  # [B, Ld]
        return vec, mask

    def _skip_punctuation(self, ids: list[list[int]], mask: torch.Tensor) -> torch.Tensor:
        """``mask`` [B, L] with ColBERT's skiplist (punctuation tokens) set to 0."""
        padded, _ = pad(ids, pad_id=-1)  # [B, L]; -1 is never a token id
        skip = torch.as_tensor(sorted(self.skip_ids), dtype=torch.long)
        drop = torch.isin(padded, skip).to(mask.device)  # [B, L]
        return mask.masked_fill(drop[:, : mask.shape[1]], 0)
