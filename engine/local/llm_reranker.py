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
    InputTooLongError,
    ModelLoadError,
    TemplateError,
    UnsupportedScoreType,
)
from ..templates import ScoreTemplate, bundled_templates, load_template
from ..types import ScoreResult, ScoreType
from .base import LocalBackend, score_results
from .batching import pad
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length
from .conversion import auto_template, check_decoder, resolve_conversion
from .heads import Activation, finalize_logits, linear_head, resolve_activation, token_score_weight
from .pooling import pool
from .runner import Prepared, ProgressFn, Stages
from .tokenizing import tokenize, truncate_text_to_tokens
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


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """Model inputs of several pairs: token ids, the rendered prompts (None without a template
    string) and which pairs were cut."""

    input_ids: list[list[int]]
    prompts: list[str | None]
    truncated: list[bool]


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
        self.num_labels = int(self.weight.shape[0])
        if self.num_labels not in (1, 2):
            raise UnsupportedScoreType(
                f"{info.path} has {self.num_labels} labels; a score needs 1 (a relevance logit) "
                "or 2 (not relevant / relevant)."
            )
        self.activation: Activation = resolve_activation(
            info.config, info.st_config, self.num_labels
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
        self.template, self.template_kwargs = self._resolve_template()
        self._warned_tpt = False

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

    def _resolve_template(self) -> tuple[ScoreTemplate | None, dict[str, Any]]:
        kwargs = dict(self.config.template_kwargs or {})
        if self.config.instruction is not None:
            # vLLM: `instruction` is copied into chat_template_kwargs unless already there.
            kwargs.setdefault("instruction", self.config.instruction)
        if self.config.template is not None:
            template = load_template(self.config.template)
            logger.info("Score template for %s: %s (given).", self.info.path, template.name)
        else:
            chosen = auto_template(self.info.config, self.spec)
            if chosen is None:
                if kwargs:
                    raise TemplateError(
                        f"instruction/template_kwargs need a score template, and none is known "
                        f"for {self.info.path}. Pass template= one of "
                        f"{', '.join(bundled_templates())} or a .jinja path."
                    )
                how = (
                    "the tokenizer's text-pair encoding"
                    if self.spec.use_sep_token
                    else "the plain concatenation query + document"
                )
                logger.warning(
                    "No score template for %s: its config doesn't name a known reranker family, "
                    "so pairs are encoded as %s (vLLM's fallback). LLM rerankers usually need "
                    "their prompt format: pass template= one of %s or a .jinja path.",
                    self.info.path,
                    how,
                    ", ".join(bundled_templates()),
                )
                return None, kwargs
            name, why = chosen
            template = load_template(name)
            logger.info(
                "Score template for %s: %s, chosen from its config (%s); pass template= to "
                "use another.",
                self.info.path,
                name,
                why,
            )
        template.check_kwargs(kwargs)
        return template, kwargs

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
    def _render(self, query: str, document: str) -> str:
        if self.template is None:
            return query + document  # vLLM without a separator: no space, nothing between
        return self.template.render(query, document, **self.template_kwargs)

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        # add_special_tokens=True as vLLM: a tokenizer that adds BOS (Llama, Gemma) prepends it.
        enc = self.tokenizer(prompts, add_special_tokens=True, padding=False, verbose=False)
        return [list(ids) for ids in enc["input_ids"]]

    def _capped(self, texts: list[str], cap: int | None) -> tuple[list[str], list[bool]]:
        if cap is None:
            return texts, [False] * len(texts)
        pairs = [truncate_text_to_tokens(self.tokenizer, t, cap) for t in texts]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _fit(self, query: str, document: str, limit: int) -> list[int]:
        """Ids of the prompt cut to ``limit`` by shortening the document text, then the query,
        so the template's suffix (where the score is read) survives."""
        texts = {"query": query, "document": document}
        ids = self._encode([self._render(query, document)])[0]
        for side in ("document", "query"):
            original = texts[side]
            n = len(self.tokenizer(original, add_special_tokens=False, verbose=False)["input_ids"])
            while len(ids) > limit and n > 0:
                n = max(0, n - (len(ids) - limit))
                texts[side] = truncate_text_to_tokens(self.tokenizer, original, n)[0]
                ids = self._encode([self._render(texts["query"], texts["document"])])[0]
            if len(ids) <= limit:
                return ids
        raise InputTooLongError(
            f"The score template alone is {len(ids)} tokens with an empty query and document, "
            f"over the limit of {limit}. Raise max_length or use a shorter template."
        )

    def prepare(
        self,
        queries: list[str],
        documents: list[str],
        query_index: list[int],
        truncate_prompt_tokens: int | None,
        positions: list[int] | None = None,
    ) -> Rendered:
        """Render and tokenize pairs (queries[query_index[k]], documents[k]), applying the text
        caps and the length limit; ``positions``: the pairs' indices in the call (errors)."""
        where = positions if positions is not None else list(range(len(documents)))
        qs, q_cut = self._capped(queries, self.config.max_tokens_per_query)
        ds, d_cut = self._capped(documents, self.config.max_tokens_per_doc)
        pair_q = [qs[i] for i in query_index]
        capped = [q_cut[qi] or dc for qi, dc in zip(query_index, d_cut, strict=True)]
        if self.template is None and self.spec.use_sep_token:
            # vLLM's path for converted checkpoints without a template: tokenizer(q, d).
            limit = truncate_prompt_tokens or self._max_length
            tok = tokenize(
                self.tokenizer,
                pair_q,
                ds,
                limit=limit,
                strategy="longest_first" if truncate_prompt_tokens else "only_second",
                overflow="truncate" if truncate_prompt_tokens else self.config.overflow,
                what="pair",
                positions=where,
            )
            return Rendered(
                input_ids=tok.input_ids,
                prompts=[None] * len(ds),
                truncated=[a or b for a, b in zip(capped, tok.truncated, strict=True)],
            )
        rendered = [self._render(q, d) for q, d in zip(pair_q, ds, strict=True)]
        ids = self._encode(rendered)
        prompts: list[str | None] = list(rendered)
        truncated = list(capped)
        if truncate_prompt_tokens is not None:
            # vLLM cuts the rendered prompt from the right, template suffix included.
            if (
                not self._warned_tpt
                and self.template is not None
                and any(len(s) > truncate_prompt_tokens for s in ids)
            ):
                self._warned_tpt = True
                logger.warning(
                    "truncate_prompt_tokens cuts the rendered prompt from the right, removing "
                    "the score template's suffix; load with max_tokens_per_doc= to cut the "
                    "document text before templating instead."
                )
            for i, seq in enumerate(ids):
                if len(seq) > truncate_prompt_tokens:
                    ids[i] = seq[:truncate_prompt_tokens]
                    truncated[i] = True
            return Rendered(input_ids=ids, prompts=prompts, truncated=truncated)
        over = [i for i, seq in enumerate(ids) if len(seq) > self._max_length]
        if over and self.config.overflow == "error":
            i = over[0]
            raise InputTooLongError(
                f"pair {where[i]} is {len(ids[i])} tokens after templating, over the limit of "
                f"{self._max_length} ({len(over)} of {len(ids)} pairs are too long). Shorten it, "
                "load with max_tokens_per_doc=, or with overflow='truncate' to cut the document "
                "and flag the result."
            )
        for i in over:
            ids[i] = self._fit(pair_q[i], ds[i], self._max_length)
            prompts[i] = None  # no longer the render of the caller's texts
            truncated[i] = True
        return Rendered(input_ids=ids, prompts=prompts, truncated=truncated)

    # -- forward ---------------------------------------------------------------------------------
    def forward(
        self, ids: list[list[int]], _type_ids: list[list[int]] | None = None,
        _packed: bool = False,
    ) -> torch.Tensor:
        """Pooled float32 hidden states [B, H] for one batch of unpadded id lists."""
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
            return pool(hidden.float(), mask, _POOL_MODES[self.spec.pooling])  # [B, H]

    # -- head ------------------------------------------------------------------------------------
    def head(self, pooled: torch.Tensor, use_activation: bool) -> torch.Tensor:
        """Pooled states [B, H] → the score head's logits → one float32 score per pair [B]."""
        logits = linear_head(pooled, self.weight, self.bias)  # [B, C]
        return finalize_logits(logits, self.activation, use_activation=use_activation)

    # -- the call --------------------------------------------------------------------------------
    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        stages: Stages[torch.Tensor] = Stages(
            prepare=lambda items: self._prepare_stage(call, items),
            forward=self.forward,
            head=lambda pooled, _: self.head(pooled, call.activation),
        )
        scores, coverage = self.runner.scores(len(call.documents), stages, progress=progress)
        return score_results(scores, coverage.truncated, coverage.num_tokens)

    def _prepare_stage(self, call: ScoreCall, items: list[int]) -> Prepared:
        rendered = self.prepare(
            call.queries, [call.documents[i] for i in items],
            [call.query_index[i] for i in items], call.truncate_prompt_tokens, positions=items,
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
