"""Late-interaction backend: per-token embeddings (projected, L2-normalised), scored by MaxSim."""

from __future__ import annotations

import string

import torch

from ..calls import ScoreCall, VllmTokenization
from ..config import ScorerConfig
from ..errors import ModelLoadError
from ..types import CacheInfo, ScoreResult, ScoreType
from .base import LocalBackend, pair_token_ids
from .batching import pad
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length
from .doc_cache import CachedEncoding, encoding_key, make_cache
from .encoder import shared_encoder
from .kernels import run_dense
from .packed import TokenStates, unpack
from .runner import Coverage, Prepared, ProgressFn, RowCache, Stages
from .similarity import maxsim, normalize_tokens
from .tokenizing import distinct
from .weights import load_st_dense, load_state_dict


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

    @property
    def min_length(self) -> int:
        specials = int(self.encoder.tokenizer.num_special_tokens_to_add(pair=False))
        return specials + 1 + (1 if self.config.colbert_markers else 0)  # + ColBERT's marker

    def modules(self) -> list[torch.nn.Module]:
        return [self.encoder.model] + ([self.projection] if self.projection is not None else [])

    def cache_info(self) -> CacheInfo | None:
        return None if self.doc_cache is None else self.doc_cache.info()

    def clear_cache(self) -> None:
        if self.doc_cache is not None:
            self.doc_cache.clear()

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
    def prepare(
        self, texts: list[str], *, limit: int, overflow: str, query: bool,
        positions: list[int] | None = None,
    ) -> Prepared:
        """Token ids of queries or documents, with ColBERT's marker where asked for."""
        what = "query" if query else "document"
        if not self.config.colbert_markers:
            plain: Prepared = self.encoder.tokenize(
                texts, limit=limit, overflow=overflow, what=what, positions=positions
            )
            return plain
        # Room for the marker inserted after the first special token.
        length = min(self.config.query_length, limit) if query else limit
        tok = self.encoder.tokenize(
            texts, limit=length - 1, overflow="truncate" if query else overflow, what=what,
            positions=positions,
        )
        marker = self.query_marker if query else self.doc_marker
        ids = [seq[:1] + [marker] + seq[1:] for seq in tok.input_ids]
        return Prepared(input_ids=ids, token_type_ids=None, truncated=tok.truncated)

    # -- forward ---------------------------------------------------------------------------------
    def forward_augmented(
        self, ids: list[list[int]], _type_ids: list[list[int]] | None = None,
        _packed: bool = False,
    ) -> TokenStates:
        """ColBERT query augmentation: each query padded with [MASK] to ``query_length``.

        The model doesn't attend to the expansion tokens, but their output vectors take part in
        MaxSim, so every row of each query is scored. Each query is padded on its own (never to
        its batch's longest), and the packed forward is used where the model has one, so a
        query's vectors do not depend on its batch company.
        """
        mask_id = int(self.encoder.tokenizer.mask_token_id)
        expanded = [seq + [mask_id] * max(0, self.config.query_length - len(seq)) for seq in ids]
        return self.encoder.forward(  # type: ignore[no-any-return]
            expanded, packed=self.encoder.packed is not None, attend=[len(s) for s in ids]
        )

    # -- head ------------------------------------------------------------------------------------
    def head(
        self, states: TokenStates, ids: list[list[int]], *, use_activation: bool,
        document: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed token states [T, H] → token vectors [B, L, D] (float32, zeros in padding)
        and scoring mask [B, L].

        The projection runs on the packed rows through batch-invariant kernels and each vector
        is normalised on its own, so a text's vectors do not depend on its batch company.
        """
        vectors = states.hidden.float()  # [T, H]
        if self.projection is not None:
            vectors = run_dense(self.projection, vectors, self.encoder.head_linears)  # [T, D]
        if use_activation:
            vectors = normalize_tokens(vectors)
        vectors, mask = unpack(vectors, states.lengths)  # [B, L, D], [B, L]
        if self.drop_bos:
            mask[:, 0] = 0
        if document and self.config.colbert_markers:
            mask = self._skip_punctuation(ids, mask)
        return vectors, mask

    def _skip_punctuation(self, ids: list[list[int]], mask: torch.Tensor) -> torch.Tensor:
        """``mask`` [B, L] with ColBERT's skiplist (punctuation tokens) set to 0."""
        padded, _ = pad(ids, pad_id=-1)  # [B, L]; -1 is never a token id
        skip = torch.as_tensor(sorted(self.skip_ids), dtype=torch.long)
        drop = torch.isin(padded, skip).to(mask.device)  # [B, L]
        return mask.masked_fill(drop[:, : mask.shape[1]], 0)

    def _stages(
        self, texts: list[str], positions: list[int], *, limit: int, overflow: str,
        use_activation: bool, query: bool, vllm: VllmTokenization | None = None,
    ) -> Stages[tuple[torch.Tensor, torch.Tensor]]:
        augmented = query and self.config.colbert_markers

        def prepare(items: list[int]) -> Prepared:
            chosen = [texts[i] for i in items]
            if vllm is not None:  # vLLM's rules, and vLLM adds no ColBERT markers
                cap = vllm.max_tokens_per_query if query else vllm.max_tokens_per_doc
                return self.encoder.tokenize(chosen, limit=limit, overflow=overflow,
                                             what="text", vllm=vllm, cap=cap)
            return self.prepare(chosen, limit=limit, overflow=overflow, query=query,
                                positions=[positions[i] for i in items])

        return Stages(
            prepare=prepare,
            forward=self.forward_augmented if augmented else self.encoder.forward,
            head=lambda states, ids: self.head(
                states, ids, use_activation=use_activation, document=not query
            ),
            packed=self.encoder.packed,
        )

    # -- the call --------------------------------------------------------------------------------
    def encode_queries(
        self, queries: list[str], positions: list[int], *, limit: int, overflow: str,
        use_activation: bool, vllm: VllmTokenization | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, Coverage]:
        """Query token vectors [Q, Lq, D] and scoring masks [Q, Lq] in input order (zeros in
        the padding), and which queries were cut."""
        vectors: list[torch.Tensor] = [torch.empty(0)] * len(queries)
        masks: list[torch.Tensor] = [torch.empty(0)] * len(queries)

        def keep(items: list[int], rows: tuple[torch.Tensor, torch.Tensor]) -> None:
            v, m = rows  # [B, L, D], [B, L]
            for j, i in enumerate(items):
                vectors[i], masks[i] = v[j], m[j]

        stages = self._stages(queries, positions, limit=limit, overflow=overflow,
                              use_activation=use_activation, query=True, vllm=vllm)
        coverage = self.runner.run(len(queries), stages, keep,
                                   keep_ids=vllm is not None and vllm.keep_token_ids)
        # Each row is as wide as its batch; pad them to one width for MaxSim.
        q_vec = torch.nn.utils.rnn.pad_sequence(vectors, batch_first=True)  # [Q, Lq, D]
        q_mask = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True)  # [Q, Lq]
        return q_vec, q_mask, coverage

    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        limit, overflow = self.text_limit(call)
        use_activation = call.activation
        # Each distinct query is encoded once, however many documents it is paired with.
        queries, query_index, q_first = distinct(call.queries, call.query_index)
        vllm = call.vllm
        q_vec, q_mask, q_cov = self.encode_queries(
            queries, q_first, limit=limit, overflow=overflow, use_activation=use_activation,
            vllm=vllm,
        )
        # Identical documents are encoded once; with a document cache, so are documents seen in
        # earlier calls (same text, limit, overflow rule and use_activation).
        texts, doc_slot, d_first = distinct(call.documents, list(range(len(call.documents))))
        pairs_of: list[list[int]] = [[] for _ in texts]
        for k, slot in enumerate(doc_slot):
            pairs_of[slot].append(k)
        scores = [0.0] * len(call.documents)

        def score_batch(items: list[int], rows: tuple[torch.Tensor, torch.Tensor]) -> None:
            d_vec, d_mask = rows  # [B, Ld, D], [B, Ld]
            pairs = [k for u in items for k in pairs_of[u]]
            if len(pairs) != len(items):  # a document repeated within the call
                repeat = torch.as_tensor(
                    [j for j, u in enumerate(items) for _ in pairs_of[u]], device=self.device
                )
                d_vec, d_mask = d_vec[repeat], d_mask[repeat]
            q_rows = torch.as_tensor([query_index[k] for k in pairs], device=self.device)
            # One batched MaxSim for the whole batch; for 1:N, q_vec[q_rows] is one query.
            values = maxsim(q_vec[q_rows], d_vec, q_mask[q_rows], d_mask)  # [P]
            for k, v in zip(pairs, values.tolist(), strict=True):
                scores[k] = float(v)

        stages = self._stages(texts, d_first, limit=limit, overflow=overflow,
                              use_activation=use_activation, query=False, vllm=vllm)
        cache = None
        if self.doc_cache is not None and vllm is None:
            cache = RowCache(
                cache=self.doc_cache,
                keys=[encoding_key(t, limit=limit, overflow=overflow,
                                   use_activation=use_activation) for t in texts],
                split=_split_token_rows,
                join=_join_token_rows,
            )
        d_cov = self.runner.run(
            len(texts), stages, score_batch, weights=[len(p) for p in pairs_of],
            progress=progress, cache=cache, keep_ids=vllm is not None and vllm.keep_token_ids,
        )
        pad_id = self.encoder.tokenizer.pad_token_id
        return [
            ScoreResult(
                index=k,
                score=scores[k],
                truncated=q_cov.truncated[q] or d_cov.truncated[doc_slot[k]],
                num_tokens=q_cov.num_tokens[q] + d_cov.num_tokens[doc_slot[k]],
                query_tokens=q_cov.num_tokens[q],
                prompt_token_ids=pair_token_ids(q_cov.input_ids, d_cov.input_ids, q,
                                                doc_slot[k], pad_id),
            )
            for k, q in enumerate(query_index)
        ]


def _split_token_rows(
    rows: tuple[torch.Tensor, torch.Tensor], lengths: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    # clone(): a slice would keep the whole batch tensor alive in the cache.
    vec, mask = rows  # [B, L, D], [B, L]
    return [(vec[j, :n].clone(), mask[j, :n].clone()) for j, n in enumerate(lengths)]


def _join_token_rows(entries: list[CachedEncoding]) -> tuple[torch.Tensor, torch.Tensor]:
    # Cached documents are padded back into one batch with zeros, which their mask leaves out.
    vec = torch.nn.utils.rnn.pad_sequence([e.value for e in entries], batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence(
        [e.mask for e in entries if e.mask is not None], batch_first=True
    )
    return vec, mask  # [B, Ld, D], [B, Ld]
