"""Cross-encoder backend: the pair through a classification head, then the activation."""

from __future__ import annotations

from typing import Any

import torch

from ..calls import ScoreCall
from ..config import ScorerConfig
from ..errors import UnsupportedScoreType
from ..types import ScoreResult, ScoreType
from .base import LocalBackend, score_results
from .batching import pad, pad_values
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length
from .heads import Activation, finalize_logits, resolve_activation
from .packed import build_packed_classifier, pack
from .runner import Prepared, ProgressFn, Stages
from .tokenizing import prepare_pairs_vllm, tokenize
from .weights import cached, load_pretrained, load_tokenizer


class CrossEncoderBackend(LocalBackend):
    """``tokenizer(query, document)`` → ``*ForSequenceClassification`` → activation.

    Matches vLLM's cross-encoder path for BERT/RoBERTa/XLM-R style checkpoints (token_type_ids
    where the tokenizer makes them) and sentence-transformers ``CrossEncoder.predict``.
    """

    score_type = ScoreType.CROSS_ENCODER

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info=info, config=config, device=device, dtype=dtype)
        self._slot = cached(
            (str(info.path), self.score_type, str(device), dtype, config.trust_remote_code),
            self._load,
        )
        self.model, self.tokenizer, self._packed = self._slot.value
        self._num_labels = int(self.model.config.num_labels)
        self.activation: Activation = resolve_activation(
            info.config, info.st_config, self._num_labels
        )
        if self._num_labels not in (1, 2):
            raise UnsupportedScoreType(
                f"{info.path} has {self._num_labels} labels; a cross-encoder score needs 1 (a "
                "relevance logit) or 2 (not relevant / relevant)."
            )
        self._max_length = cap_max_length(model_max_length(info, self.tokenizer), config.max_length)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _load(self) -> tuple[torch.nn.Module, Any, Any]:
        from transformers import AutoModelForSequenceClassification

        tokenizer = load_tokenizer(self.info.path, trust_remote_code=self.config.trust_remote_code)
        model = load_pretrained(
            AutoModelForSequenceClassification,
            self.info.path,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.config.trust_remote_code,
        )
        # The padding-free forward (CPU, BERT family), or None for the stock one.
        return model, tokenizer, build_packed_classifier(model, self.device)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def min_length(self) -> int:
        return int(self.tokenizer.num_special_tokens_to_add(pair=True)) + 1

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    # -- prepare ---------------------------------------------------------------------------------
    def prepare(
        self, queries: list[str], documents: list[str], truncate_prompt_tokens: int | None,
        positions: list[int] | None = None,
    ) -> Prepared:
        """Token ids of the pairs (queries[k], documents[k]); ``positions``: their indices in
        the call (for error messages)."""
        if truncate_prompt_tokens is not None:
            # vLLM: truncate_prompt_tokens cuts the combined pair with HF's longest_first.
            return tokenize(
                self.tokenizer, queries, documents, limit=truncate_prompt_tokens,
                strategy="longest_first", overflow="truncate", what="pair", positions=positions,
            )
        return tokenize(
            self.tokenizer, queries, documents, limit=self._max_length,
            strategy="only_second", overflow=self.config.overflow, what="pair",
            positions=positions,
        )

    # -- forward ---------------------------------------------------------------------------------
    def forward(
        self, ids: list[list[int]], type_ids: list[list[int]] | None, packed: bool = False
    ) -> torch.Tensor:
        """Logits [B, num_labels] for one batch of unpadded id lists.

        ``packed``: use the padding-free forward (only where the model has one).
        """
        if packed and self._packed is not None:
            encoder, head = self._packed
            cls = encoder(pack(ids, type_ids), cls_only=True)  # [B, H]
            with torch.inference_mode():
                return head(cls)  # type: ignore[no-any-return]
        input_ids, mask = pad(ids, pad_id=self._pad_id)  # [B, L], [B, L]
        kwargs: dict[str, torch.Tensor] = {
            "input_ids": input_ids.to(self.device),
            "attention_mask": mask.to(self.device),
        }
        if type_ids is not None:
            kwargs["token_type_ids"] = pad_values(type_ids, value=0).to(self.device)
        with torch.inference_mode():
            return self.model(**kwargs).logits  # type: ignore[no-any-return]

    # -- the call --------------------------------------------------------------------------------
    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        pair_queries = [call.queries[q] for q in call.query_index]

        def prepare(items: list[int]) -> Prepared:
            queries = [pair_queries[i] for i in items]
            documents = [call.documents[i] for i in items]
            if call.vllm is not None:
                return prepare_pairs_vllm(self.tokenizer, queries, documents, call.vllm)
            return self.prepare(queries, documents, call.truncate_prompt_tokens, positions=items)

        stages: Stages[torch.Tensor] = Stages(
            prepare=prepare,
            forward=self.forward,
            # head: activation in float32 → one score per pair [B]
            head=lambda logits, _: finalize_logits(
                logits, self.activation, use_activation=call.activation
            ),
            packed=None if self._packed is None else self._packed[0],
        )
        keep = call.vllm is not None and call.vllm.keep_token_ids
        scores, coverage = self.runner.scores(
            len(call.documents), stages, progress=progress, keep_ids=keep
        )
        return score_results(scores, coverage)
