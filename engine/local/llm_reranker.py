"""LLM rerankers: decoder LMs that score a templated (query, document) prompt.

Which checkpoints these are and what vLLM's ``hf_overrides`` mean is decided in
``engine.local.conversion``. This backend loads the decoder stack and a one-label score weight
(built once in float32 from the LM head rows, ``w = W[t1] − W[t0]`` or ``W[t]``, or the
checkpoint's own ``score`` head) and plugs three stages into the runner:

- prepare: the score template renders each pair, text caps cut query/document text first, and
  an over-long prompt loses document text (then query text) so the template's suffix, where the
  score is read, survives;
- forward: the decoder (causal, or bidirectional for nemotron), then the last real token's
  hidden state (or the mean);
- head: ``h·w (+ b)`` and the activation.

The family's template is picked from the checkpoint's config when it is a known one, and the
choice is logged once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..calls import ScoreCall
from ..config import ScorerConfig
from ..errors import (
    InputError,
    ModelLoadError,
    UnsupportedScoreType,
)
from ..types import ScoreResult, ScoreType
from .base import LocalBackend, score_results
from .batching import pad
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length
from .conversion import check_decoder, resolve_conversion
from .heads import Activation, finalize_logits, resolve_activation, token_score_weight
from .kernels import Linears
from .llm_prompts import LLMPrompts, Rendered, resolve_template
from .packed_decoder import build_packed_decoder
from .pooling import pool
from .runner import Prepared, ProgressFn, Stages
from .weights import cached, load_pretrained, load_tokenizer

__all__ = ["LLMRerankerBackend", "Rendered", "bidirectional_attention_mask"]

logger = logging.getLogger("engine")

# The conversion's pooling names → engine.local.pooling's modes.
_POOL_MODES = {"last": "lasttoken", "mean": "mean", "cls": "cls"}


def bidirectional_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask [B, 1, L, L]: every token sees every real token, none sees padding.

    transformers uses a 4D mask as given (no causal triangle is added), and SDPA only falls back
    to its causal kernel when no mask is passed; so this is how a decoder runs bidirectionally.
    """
    blocked = (mask == 0)[:, None, None, :]  # [B, 1, 1, L]
    bias = torch.zeros(blocked.shape, dtype=dtype, device=mask.device)
    bias = bias.masked_fill(blocked, torch.finfo(dtype).min)  # [B, 1, 1, L]
    return bias.expand(mask.shape[0], 1, mask.shape[1], mask.shape[1])  # [B, 1, L, L]


@dataclass(frozen=True)
class _Loaded:
    base: torch.nn.Module  # the decoder stack: input ids → last hidden states
    tokenizer: Any
    weight: torch.Tensor  # [C, H] float32
    bias: torch.Tensor | None  # [C] float32


class LLMRerankerBackend(LocalBackend):
    """Templated prompt → decoder → hidden state at the last real token (or mean) → w·h."""

    score_type = ScoreType.CROSS_ENCODER

    def __init__(
        self,
        *,
        info: CheckpointInfo,
        config: ScorerConfig,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info=info, config=config, device=device, dtype=dtype)
        self.spec = resolve_conversion(info.config)
        check_decoder(info, self.spec)
        self._slot = cached(
            (
                str(info.path),
                "llm-reranker",
                str(device),
                dtype,
                config.trust_remote_code,
                self.spec,
            ),
            self._load,
        )
        loaded: _Loaded = self._slot.value
        self.model, self.tokenizer = loaded.base, loaded.tokenizer
        self.weight, self.bias = loaded.weight, loaded.bias
        # The padding-free decoder (Llama, Qwen2/3, Gemma), or None for the stock forward.
        self._decoder = build_packed_decoder(self.model, device, causal=self.spec.causal)
        self._head_linears = Linears(device, torch.float32)
        self._num_labels = int(self.weight.shape[0])
        if self._num_labels not in (1, 2):
            raise UnsupportedScoreType(
                f"{info.path} has {self._num_labels} labels; a score needs 1 (a relevance logit) "
                "or 2 (not relevant / relevant)."
            )
        self.activation: Activation = resolve_activation(
            info.config, info.st_config, self._num_labels
        )
        self._max_length = cap_max_length(model_max_length(info, self.tokenizer), config.max_length)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        # Decoder tokenizers often have no pad token; padded positions are masked out anyway.
        self._pad_id = int(pad_id) if pad_id is not None else 0
        for name in ("max_tokens_per_query", "max_tokens_per_doc"):
            cap = getattr(config, name)
            if cap is not None and cap >= self._max_length:
                raise InputError(
                    f"{name} ({cap}) must be less than the model's input limit "
                    f"({self._max_length} tokens)."
                )
        temperature = info.config.get("temperature")
        if not self.spec.causal and temperature not in (None, 1, 1.0):
            logger.warning(
                "%s sets temperature=%s, which its own code divides the logit by; vLLM ignores "
                "it and so do we, so scores match vLLM's.",
                info.path,
                temperature,
            )
        template, template_kwargs = resolve_template(info, config, self.spec)
        self.prompts = LLMPrompts(
            tokenizer=self.tokenizer, template=template, template_kwargs=template_kwargs,
            use_sep_token=self.spec.use_sep_token, max_length=self._max_length, config=config,
        )
        self.template = template

    # -- load ------------------------------------------------------------------------------------
    def _load(self) -> _Loaded:
        trc = self.config.trust_remote_code
        tokenizer = load_tokenizer(self.info.path, trust_remote_code=trc)
        if self.spec.tokens:
            return self._load_from_tokens(tokenizer)
        return self._load_score_head(tokenizer)

    def _token_ids(self, tokenizer: Any) -> list[int]:
        ids: list[int] = []
        for token in self.spec.tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or tokenizer.convert_ids_to_tokens(int(token_id)) != token:
                raise ModelLoadError(
                    f"classifier_from_token {token!r} is not a token of {self.info.path}'s "
                    "vocabulary. These are vocabulary token strings (e.g. 'yes', '1', 'Yes'), not "
                    "text; check the model card for the exact tokens."
                )
            ids.append(int(token_id))
        return ids

    def _load_from_tokens(self, tokenizer: Any) -> _Loaded:
        from transformers import AutoModelForCausalLM

        ids = self._token_ids(tokenizer)
        lm: Any = load_pretrained(
            AutoModelForCausalLM,
            self.info.path,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.config.trust_remote_code,
        )
        head = lm.get_output_embeddings()
        if head is None:
            raise ModelLoadError(f"{self.info.path} has no LM head to read token logits from.")
        assert self.spec.method is not None  # resolve_conversion guarantees it with tokens
        with torch.no_grad():
            weight = token_score_weight(head.weight.detach(), ids, self.spec.method)  # [1, H]
        # Keep only the decoder stack: the vocabulary-sized head is never run.
        return _Loaded(base=lm.base_model, tokenizer=tokenizer, weight=weight, bias=None)

    def _load_score_head(self, tokenizer: Any) -> _Loaded:
        from transformers import AutoModelForSequenceClassification

        kwargs: dict[str, Any] = {}
        loader: Any = AutoModelForSequenceClassification
        if not self.spec.causal or self.info.model_type == "llama_bidirec":
            # nemotron's custom class is a plain Llama with a different mask; build the stock
            # class from the same config so no remote code runs (the mask is ours, in forward).
            from transformers import LlamaConfig, LlamaForSequenceClassification

            fields = {
                k: v
                for k, v in self.info.config.items()
                if k not in ("model_type", "auto_map", "architectures")
            }
            kwargs["config"] = LlamaConfig(**fields)
            loader = LlamaForSequenceClassification
        model: Any = load_pretrained(
            loader,
            self.info.path,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.config.trust_remote_code,
            **kwargs,
        )
        head = getattr(model, "score", None)
        if not isinstance(head, torch.nn.Linear):
            raise ModelLoadError(
                f"{self.info.path} is a {type(model).__name__} without a linear `score` head; "
                "it is not an LLM reranker checkpoint this backend knows."
            )
        weight = head.weight.detach().float()  # [C, H]
        bias = head.bias.detach().float() if head.bias is not None else None
        return _Loaded(base=model.base_model, tokenizer=tokenizer, weight=weight, bias=bias)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def min_length(self) -> int:
        if self.template is None and self.spec.use_sep_token:  # tokenizer(query, document)
            return int(self.tokenizer.num_special_tokens_to_add(pair=True)) + 1
        return 1  # a rendered prompt is cut from the right (vLLM), at any length

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    # -- prepare ---------------------------------------------------------------------------------
    def prepare(
        self, queries: list[str], documents: list[str], query_index: list[int],
        truncate_prompt_tokens: int | None, positions: list[int] | None = None,
    ) -> Rendered:
        """Rendered prompts and token ids of pairs, by Scorer's rules (see LLMPrompts)."""
        return self.prompts.prepare(queries, documents, query_index, truncate_prompt_tokens,
                                    positions)

    # -- forward ---------------------------------------------------------------------------------
    def forward(
        self, ids: list[list[int]], _type_ids: list[list[int]] | None = None,
        _packed: bool = False,
    ) -> torch.Tensor:
        """Pooled float32 hidden states [B, H] for one batch of unpadded id lists.

        The padding-free decoder where the architecture has one (every call, whatever its
        size: a pair's score must not depend on its batch company), else the stock padded one.
        """
        mode = _POOL_MODES[self.spec.pooling]
        if self._decoder is not None:
            return self._decoder(ids, pooling=mode)  # type: ignore[no-any-return]
        # Right padding: real tokens keep positions 0..n-1, and under a causal mask they never
        # see the padding after them.
        input_ids, mask = pad(ids, pad_id=self._pad_id, side="right")  # [B, L], [B, L]
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        if self.spec.causal:
            attention: torch.Tensor = mask
        else:
            attention = bidirectional_attention_mask(mask, self.dtype)  # [B, 1, L, L]
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
            return pool(hidden.float(), mask, mode)  # [B, H]

    # -- head ------------------------------------------------------------------------------------
    def head(self, pooled: torch.Tensor, use_activation: bool) -> torch.Tensor:
        """Pooled states [B, H] → the score head's logits → one float32 score per pair [B].

        h·w + b in float32 (vLLM's head dtype) through batch-invariant kernels.
        """
        logits = self._head_linears(pooled.float(), self.weight, self.bias)  # [B, C]
        return finalize_logits(logits, self.activation, use_activation=use_activation)

    # -- the call --------------------------------------------------------------------------------
    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        stages: Stages[torch.Tensor] = Stages(
            prepare=lambda items: self._prepare_stage(call, items),
            forward=self.forward,
            head=lambda pooled, _: self.head(pooled, call.activation),
            packed=self._decoder,
        )
        keep = call.vllm is not None and call.vllm.keep_token_ids
        scores, coverage = self.runner.scores(
            len(call.documents), stages, progress=progress, keep_ids=keep
        )
        return score_results(scores, coverage)

    def _prepare_stage(self, call: ScoreCall, items: list[int]) -> Prepared:
        queries = call.queries
        documents = [call.documents[i] for i in items]
        query_index = [call.query_index[i] for i in items]
        if call.vllm is not None:
            rendered = self.prompts.prepare_vllm(queries, documents, query_index, call.vllm)
        else:
            rendered = self.prompts.prepare(
                queries, documents, query_index, call.truncate_prompt_tokens, positions=items
            )
        empty = [i for i, seq in zip(items, rendered.input_ids, strict=True) if not seq]
        if empty:
            raise InputError(
                f"pair {empty[0]} has no tokens (empty query and document, no template). Give "
                "it text or a score template."
            )
        return Prepared(
            input_ids=rendered.input_ids, token_type_ids=None, truncated=rendered.truncated
        )
