"""The prompts of LLM rerankers: a score template renders each pair, then it is tokenized.

Two sets of rules. ``Scorer``'s own (:meth:`LLMPrompts.prepare`): text caps first, and an
over-long prompt loses document text (then query text) so the template's suffix, where the score
is read, survives; the cut is flagged. vLLM's (:meth:`LLMPrompts.prepare_vllm`, for
``engine.LLM`` and ``scorer serve``): no template unless one is given, the pair concatenated
(or the tokenizer's pair encoding where the checkpoint keeps a separator), and an over-long
prompt refused unless truncation is asked for, which cuts the whole prompt from one side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..calls import VllmTokenization
from ..config import ScorerConfig
from ..errors import InputError, InputTooLongError, TemplateError
from ..templates import ScoreTemplate, bundled_templates, load_template
from .checkpoint import CheckpointInfo
from .conversion import ConversionSpec, auto_template
from .tokenizing import (
    cap_texts,
    encode_vllm,
    prepare_pairs_vllm,
    tokenize,
    truncate_text_to_tokens,
)

__all__ = ["LLMPrompts", "Rendered", "resolve_template"]

logger = logging.getLogger("engine")

# vLLM refuses these in chat_template_kwargs (its scorer passes them itself).
_VLLM_RESERVED = {"chat_template", "tools", "tokenize"}


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """Model inputs of several pairs: token ids, the rendered prompts (None without a template
    string) and which pairs were cut."""

    input_ids: list[list[int]]
    prompts: list[str | None]
    truncated: list[bool]


def resolve_template(
    info: CheckpointInfo, config: ScorerConfig, spec: ConversionSpec
) -> tuple[ScoreTemplate | None, dict[str, Any]]:
    """The load-time score template and its kwargs: given, the family's (when auto_template),
    or none."""
    kwargs = dict(config.template_kwargs or {})
    if config.instruction is not None:
        # vLLM: `instruction` is copied into chat_template_kwargs unless already there.
        kwargs.setdefault("instruction", config.instruction)
    if config.template is not None:
        template = load_template(config.template)
        logger.info("Score template for %s: %s (given).", info.path, template.name)
    else:
        chosen = auto_template(info.config, spec) if config.auto_template else None
        if chosen is None and not config.auto_template:
            if kwargs:
                raise TemplateError(
                    "instruction/template_kwargs need a score template; pass one with "
                    "--chat-template (chat_template=)."
                )
            if config.hf_overrides and config.hf_overrides.get("is_original_qwen3_reranker"):
                # vLLM's own warning: the model was trained with its prompt format.
                logger.warning(
                    "Serving an original Qwen3 reranker (%s) without a --chat-template. The "
                    "model was trained with a specific prompt template; running without it may "
                    "produce inaccurate relevance scores. Consider specifying `--chat-template "
                    "qwen3_reranker` (a bundled template).", info.path,
                )
            return None, kwargs
        if chosen is None:
            if kwargs:
                raise TemplateError(
                    f"instruction/template_kwargs need a score template, and none is known "
                    f"for {info.path}. Pass template= one of "
                    f"{', '.join(bundled_templates())} or a .jinja path."
                )
            how = (
                "the tokenizer's text-pair encoding"
                if spec.use_sep_token
                else "the plain concatenation query + document"
            )
            logger.warning(
                "No score template for %s: its config doesn't name a known reranker family, "
                "so pairs are encoded as %s (vLLM's fallback). LLM rerankers usually need "
                "their prompt format: pass template= one of %s or a .jinja path.",
                info.path,
                how,
                ", ".join(bundled_templates()),
            )
            return None, kwargs
        name, why = chosen
        template = load_template(name)
        logger.info(
            "Score template for %s: %s, chosen from its config (%s); pass template= to "
            "use another.",
            info.path,
            name,
            why,
        )
    template.check_kwargs(kwargs)
    return template, kwargs


class LLMPrompts:
    """Renders and tokenizes the pairs of one LLM reranker (its tokenizer and template)."""

    def __init__(self, *, tokenizer: Any, template: ScoreTemplate | None,
                 template_kwargs: dict[str, Any], use_sep_token: bool, max_length: int,
                 config: ScorerConfig) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.template_kwargs = template_kwargs
        self.use_sep_token = use_sep_token
        self.max_length = max_length
        self.config = config
        self._warned_tpt = False

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
        if self.template is None and self.use_sep_token:
            # vLLM's path for converted checkpoints without a template: tokenizer(q, d).
            limit = truncate_prompt_tokens or self.max_length
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
        over = [i for i, seq in enumerate(ids) if len(seq) > self.max_length]
        if over and self.config.overflow == "error":
            i = over[0]
            raise InputTooLongError(
                f"pair {where[i]} is {len(ids[i])} tokens after templating, over the limit of "
                f"{self.max_length} ({len(over)} of {len(ids)} pairs are too long). Shorten it, "
                "load with max_tokens_per_doc=, or with overflow='truncate' to cut the document "
                "and flag the result."
            )
        for i in over:
            ids[i] = self._fit(pair_q[i], ds[i], self.max_length)
            prompts[i] = None  # no longer the render of the caller's texts
            truncated[i] = True
        return Rendered(input_ids=ids, prompts=prompts, truncated=truncated)

    # -- vLLM's rules ------------------------------------------------------------------------------
    def prepare_vllm(
        self, queries: list[str], documents: list[str], query_index: list[int],
        params: VllmTokenization,
    ) -> Rendered:
        """Pairs as vLLM's cross-encoder renderer builds them (see the module docstring)."""
        pair_q = [queries[i] for i in query_index]
        template = self.template
        kwargs = dict(self.template_kwargs)
        if params.template is not None:
            template = load_template(params.template)
        extra = dict(params.template_kwargs)
        reserved = _VLLM_RESERVED & set(extra)
        if reserved:
            raise InputError(
                "chat_template_kwargs contains reserved keys that conflict with fixed scorer "
                f"arguments: {reserved}"
            )
        kwargs.update(extra)
        if template is None and self.use_sep_token:
            prep = prepare_pairs_vllm(self.tokenizer, pair_q, documents, params)
            return Rendered(input_ids=prep.input_ids, prompts=[None] * len(documents),
                            truncated=prep.truncated)
        qs, q_cut = cap_texts(self.tokenizer, pair_q, params.max_tokens_per_query)
        ds, d_cut = cap_texts(self.tokenizer, documents, params.max_tokens_per_doc)
        if template is None:
            prompts = [q + d for q, d in zip(qs, ds, strict=True)]  # vLLM: nothing between
        else:
            prompts = [template.render(q, d, **kwargs) for q, d in zip(qs, ds, strict=True)]
        prep = encode_vllm(self.tokenizer, prompts, params=params)
        cut = [a or b or c for a, b, c in zip(q_cut, d_cut, prep.truncated, strict=True)]
        return Rendered(input_ids=prep.input_ids, prompts=list(prompts), truncated=cut)
