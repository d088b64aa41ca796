"""What every local backend is: a loaded model that plugs its stages into the one runner.

For each call a backend builds :class:`~engine.local.runner.Stages` (prepare → forward → head)
and the :class:`~engine.local.runner.BatchRunner` drives them: windows, batch plans, the document
cache, progress and memory release live there, once. The backends differ only in their stages,
the way vLLM composes a pooler from a pooling method and a head over one model runner:

======================  ============================  ================  ========================
backend                 prepare                       forward           head
======================  ============================  ================  ========================
CrossEncoderBackend     tokenizer(query, document)    classifier model  activation → score
LLMRerankerBackend      template → tokenizer(prompt)  decoder stack     pool → w·h → activation
BiEncoderBackend        tokenizer(text)               encoder           pool → Dense → normalise
LateInteractionBackend  tokenizer(text) (+ markers)   encoder           project → normalise
======================  ============================  ================  ========================

then cosine (bi-encoder) or MaxSim (late interaction) over the pairs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ..calls import ScoreCall
from ..config import ScorerConfig
from ..types import CacheInfo, ScoreResult, ScoreType
from .checkpoint import CheckpointInfo, position_limit
from .runner import BatchRunner, Coverage, ProgressFn

__all__ = ["LocalBackend", "pair_token_ids", "score_results"]


class LocalBackend(ABC):
    """One loaded model that scores pairs (see the module docstring for the stages)."""

    score_type: ClassVar[ScoreType]

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.info = info
        self.config = config
        self.device = device
        self.dtype = dtype
        self.runner = BatchRunner(
            batch_size=config.batch_size, max_tokens_per_batch=config.max_tokens_per_batch
        )

    @property
    @abstractmethod
    def max_length(self) -> int:
        """Longest model input in tokens (after the user's max_length cap)."""

    @property
    @abstractmethod
    def min_length(self) -> int:
        """The fewest tokens an input can be cut to and keep its special tokens and one token
        of text (the floor of ``max_length`` and ``truncate_prompt_tokens``)."""

    @property
    def num_labels(self) -> int | None:
        """The classification head's label count (cross-encoders), None for embeddings."""
        labels = getattr(self, "_num_labels", None)
        return int(labels) if labels is not None else None

    @property
    def max_model_len(self) -> int:
        """vLLM's max_model_len: the user's max_length, else what the position table holds."""
        if self.config.max_length is not None:
            return self.config.max_length
        table = position_limit(self.info) or self.max_length
        st_max = self.info.sentence_bert_config.get("max_seq_length")
        if isinstance(st_max, int) and not isinstance(st_max, bool) and st_max > 0:
            # vLLM: sentence-transformers' max_seq_length replaces the position table's length
            # (all-MiniLM-L6-v2: 256, not 512); capped by the table, which vLLM doesn't check.
            return min(st_max, table)
        return table

    @property
    def architectures(self) -> tuple[str, ...]:
        """The checkpoint's architectures as scored (hf_overrides applied), as vLLM names them."""
        return self.info.architectures

    @abstractmethod
    def modules(self) -> list[torch.nn.Module]:
        """The torch modules holding this backend's weights."""

    @abstractmethod
    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        """Score pair k = (call.queries[call.query_index[k]], call.documents[k]), in pair order.

        ``call`` is already checked (``engine.calls.check_call``); its truncate_prompt_tokens is
        resolved against :attr:`max_length`.
        """

    def text_limit(self, call: ScoreCall) -> tuple[int, str]:
        """(token limit, overflow rule) for texts encoded on their own (bi-encoder, late
        interaction): truncate_prompt_tokens cuts without asking, else the model's limit and
        the configured overflow."""
        if call.truncate_prompt_tokens:
            return call.truncate_prompt_tokens, "truncate"
        return self.max_length, self.config.overflow

    def weights_bytes(self) -> int:
        """Bytes the loaded weights take (parameters and buffers, counted once)."""
        seen: set[int] = set()
        total = 0
        for module in self.modules():
            for tensor in [*module.parameters(), *module.buffers()]:
                key = tensor.data_ptr()
                if key not in seen:
                    seen.add(key)
                    total += tensor.numel() * tensor.element_size()
        return total

    def cache_info(self) -> CacheInfo | None:
        """The document cache's counters, or None for a backend without one."""
        return None

    def clear_cache(self) -> None:  # noqa: B027 (a no-op unless the backend has a cache)
        """Empty the document cache (a no-op without one)."""


def score_results(scores: list[float], coverage: Coverage) -> list[ScoreResult]:
    """One ScoreResult per pair, in pair order (cross-encoder and LLM reranker)."""
    ids = coverage.input_ids
    return [
        ScoreResult(index=i, score=s, truncated=cut, num_tokens=n,
                    prompt_token_ids=tuple(ids[i]) if ids is not None else None)
        for i, (s, cut, n) in enumerate(
            zip(scores, coverage.truncated, coverage.num_tokens, strict=True)
        )
    ]


def pair_token_ids(
    q_ids: list[list[int]] | None, d_ids: list[list[int]] | None, q: int, d: int,
    pad_id: int | None,
) -> tuple[int, ...] | None:
    """vLLM's prompt_token_ids of a pair encoded as two texts: query + [pad] + document."""
    if q_ids is None or d_ids is None:
        return None
    return tuple(q_ids[q] + ([pad_id] if pad_id is not None else []) + d_ids[d])
