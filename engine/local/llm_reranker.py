"""LLM rerankers: decoder LMs that score a templated (query, document) prompt.

Two kinds of checkpoint, as in vLLM (spec §2.3):

* a causal LM converted on load with vLLM's ``hf_overrides`` keys: ``classifier_from_token``
  plus ``method`` (``from_2_way_softmax``: logit = z[t1] − z[t0]; ``no_post_processing`` with
  one token: logit = z[t]), or ``is_original_qwen3_reranker``. The LM head is never run over the
  vocabulary: the score weight ``w = W[t1] − W[t0]`` (or ``W[t]``) is built once in float32 and
  dotted with the pooled hidden state, which is the same number as the logit difference;
* an already-converted ``*ForSequenceClassification`` (Qwen2/Qwen3/Gemma/Llama ...), whose
  ``score`` head is used the same way, and the bidirectional Llama of nvidia's nemotron
  rerankers, which attends without a causal mask and mean-pools (its config's ``pooling``).

The prompt comes from a score template (``engine.templates``); the family's template is picked
from the checkpoint's config when it is a known one, and the choice is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

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
from .base import LocalBackend, ProgressFn, cap_max_length, tokenize
from .batching import pad, plan_batches
from .heads import Activation, finalize_logits, resolve_activation
from .loading import (
    CheckpointInfo,
    _read_json,
    cached,
    load_pretrained,
    load_tokenizer,
    model_max_length,
)

__all__ = [
    "ConversionSpec",
    "LLMRerankerBackend",
    "apply_hf_overrides",
    "auto_template",
    "bidirectional_attention_mask",
    "is_llm_reranker",
    "last_token_index",
    "pool_hidden",
    "refuse_llm_only_options",
    "resolve_conversion",
    "token_score_weight",
    "truncate_text_to_tokens",
]

logger = logging.getLogger("engine")

# Decoder families whose *ForSequenceClassification checkpoints are LLM rerankers (last-token
# pooling, a `score` head, often no pad token). Encoders (BERT, RoBERTa, ...) stay on the
# cross-encoder backend. Keyed by config.json model_type, never by the model's name.
DECODER_MODEL_TYPES = frozenset(
    {
        "llama",
        "llama_bidirec",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3_text",
        "phi3",
        "olmo2",
        "granite",
        "stablelm",
    }
)
BIDIRECTIONAL_ARCHITECTURES = frozenset({"LlamaBidirectionalForSequenceClassification"})
METHODS = ("from_2_way_softmax", "no_post_processing")
Pooling = Literal["last", "mean", "cls"]
# The nemotron config's `pooling` names → ours (vLLM's LlamaBidirectionalConfig map).
_POOLING_NAMES: dict[str, Pooling] = {"avg": "mean", "cls": "cls", "last": "last"}


# -- which checkpoints, and what the overrides mean --------------------------------------------
def apply_hf_overrides(info: CheckpointInfo, overrides: Mapping[str, Any] | None) -> CheckpointInfo:
    """The checkpoint as vLLM sees it with ``--hf-overrides``: the keys merged into its config.

    A causal LM given ``classifier_from_token`` becomes ``*ForSequenceClassification`` (vLLM's
    ``as_seq_cls_model``), so score-type detection sees a cross-encoder.
    """
    if not overrides:
        return info
    config = {**info.config, **{k: _thaw(v) for k, v in overrides.items()}}
    architectures = tuple(config.get("architectures") or ())
    if "classifier_from_token" in overrides and not any(
        a.endswith("ForSequenceClassification") for a in architectures
    ):
        architectures = tuple(
            a.removesuffix("ForCausalLM") + "ForSequenceClassification"
            if a.endswith("ForCausalLM")
            else a
            for a in architectures
        )
    config["architectures"] = list(architectures)
    return replace(info, config=config, architectures=architectures)


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def is_llm_reranker(info: CheckpointInfo) -> bool:
    """True for a decoder LM checkpoint scored as a cross-encoder (this backend's job)."""
    if info.config.get("classifier_from_token") is not None:
        return True
    if BIDIRECTIONAL_ARCHITECTURES & set(info.architectures):
        return True
    return info.model_type in DECODER_MODEL_TYPES and info.has_classification_head


@dataclass(frozen=True, kw_only=True)
class ConversionSpec:
    """How a checkpoint becomes a one-logit reranker.

    Attributes:
        tokens: classifier_from_token (vocabulary token strings), or () for a checkpoint that
            already has a ``score`` head.
        method: "from_2_way_softmax", "no_post_processing", or None with no tokens.
        pooling: which hidden state is scored: "last" real token (LLMs), "mean", or "cls".
        causal: False for bidirectional (nemotron-style) models.
        use_sep_token: without a template, encode the pair with the tokenizer's pair format
            (True) or as the plain concatenation query + document (False), as vLLM does.
    """

    tokens: tuple[str, ...]
    method: str | None
    pooling: Pooling
    causal: bool
    use_sep_token: bool


def resolve_conversion(config: Mapping[str, Any]) -> ConversionSpec:
    """Read the conversion keys (config.json merged with hf_overrides), refusing bad combinations.

    Raises:
        UnsupportedScoreType: an unknown method, the wrong number of tokens for the method, or
            a method without tokens.
    """
    raw_tokens = config.get("classifier_from_token")
    method = config.get("method")
    if raw_tokens is not None and (
        isinstance(raw_tokens, str)
        or not isinstance(raw_tokens, Sequence)
        or not raw_tokens
        or not all(isinstance(t, str) for t in raw_tokens)
    ):
        raise UnsupportedScoreType(
            f"classifier_from_token must be a non-empty list of vocabulary tokens, got "
            f'{raw_tokens!r}, e.g. ["no", "yes"].'
        )
    tokens = tuple(raw_tokens or ())
    if config.get("is_original_qwen3_reranker"):
        if len(tokens) != 2:
            raise UnsupportedScoreType(
                "is_original_qwen3_reranker needs classifier_from_token with exactly two tokens, "
                f'the negative then the positive one: ["no", "yes"]; got {list(tokens)}.'
            )
        if method not in (None, "from_2_way_softmax"):
            raise UnsupportedScoreType(
                f"is_original_qwen3_reranker implies method 'from_2_way_softmax', got {method!r}."
            )
        method = "from_2_way_softmax"
    if tokens:
        if method not in METHODS:
            raise UnsupportedScoreType(
                f"classifier_from_token {list(tokens)} needs method= one of {list(METHODS)}, "
                f"got {method!r}: 'from_2_way_softmax' scores sigmoid(z[t1] - z[t0]) with the "
                "second token positive, 'no_post_processing' with one token scores sigmoid(z[t])."
            )
        if method == "from_2_way_softmax" and len(tokens) != 2:
            raise UnsupportedScoreType(
                f"method 'from_2_way_softmax' needs exactly two tokens [negative, positive], "
                f"got {list(tokens)}."
            )
        if method == "no_post_processing" and len(tokens) != 1:
            raise UnsupportedScoreType(
                f"method 'no_post_processing' with {len(tokens)} tokens gives {len(tokens)} "
                "labels, and a score needs one (vLLM disables its Score API then). Use one token, "
                "or 'from_2_way_softmax' with [negative, positive]."
            )
    elif method is not None:
        raise UnsupportedScoreType(
            f"method={method!r} needs classifier_from_token, the vocabulary tokens to read."
        )
    bidirectional = bool(BIDIRECTIONAL_ARCHITECTURES & set(config.get("architectures") or ()))
    causal = bool(config.get("is_causal", True)) and not bidirectional
    pooling: Pooling = "last"
    if bidirectional:
        name = config.get("pooling", "avg")
        if name not in _POOLING_NAMES:
            raise UnsupportedScoreType(
                f"pooling {name!r} in config.json is not supported; "
                f"options: {sorted(_POOLING_NAMES)}."
            )
        pooling = _POOLING_NAMES[name]
    use_sep_token = config.get("use_sep_token")
    return ConversionSpec(
        tokens=tokens,
        method=method,
        pooling=pooling,
        causal=causal,
        # vLLM: a method conversion turns the separator off (plain concatenation without a
        # template); converted checkpoints keep the default True.
        use_sep_token=bool(use_sep_token) if use_sep_token is not None else not tokens,
    )


def auto_template(config: Mapping[str, Any], spec: ConversionSpec) -> tuple[str, str] | None:
    """The bundled template of a known reranker family, and why, from config alone (no names).

    Returns None when the config doesn't identify a family.
    """
    model_type = str(config.get("model_type", ""))
    architectures = tuple(config.get("architectures") or ())
    if BIDIRECTIONAL_ARCHITECTURES & set(architectures):
        return "nemotron_rerank", f"a bidirectional Llama reranker ({architectures[0]})"
    is_vl = model_type.startswith("qwen3_vl") or any(a.startswith("Qwen3VL") for a in architectures)
    if config.get("is_original_qwen3_reranker"):
        name = "qwen3_vl_reranker" if is_vl else "qwen3_reranker"
        return name, f"is_original_qwen3_reranker with model_type {model_type!r}"
    if spec.tokens == ("no", "yes") and spec.method == "from_2_way_softmax":
        if model_type == "qwen3" or is_vl:
            name = "qwen3_vl_reranker" if is_vl else "qwen3_reranker"
            return name, f"model_type {model_type!r} with classifier tokens ['no', 'yes']"
    if model_type == "gemma" and spec.tokens == ("Yes",) and spec.method == "no_post_processing":
        return "bge_reranker_v2_gemma", "model_type 'gemma' scoring the 'Yes' token"
    if model_type == "qwen2" and spec.tokens == ("0", "1") and spec.method == "from_2_way_softmax":
        return "mxbai_rerank_v2", "model_type 'qwen2' with classifier tokens ['0', '1']"
    if (
        not spec.tokens
        and model_type == "qwen3"
        and "Qwen3ForSequenceClassification" in architectures
    ):
        return "qwen3_reranker", "an already-converted Qwen3ForSequenceClassification"
    return None


def refuse_llm_only_options(config: ScorerConfig, *, llm: bool) -> None:
    """Templates and text caps exist only for LLM rerankers; refuse them elsewhere, loudly."""
    if llm:
        return
    given = [
        name
        for name in (
            "template",
            "instruction",
            "template_kwargs",
            "max_tokens_per_query",
            "max_tokens_per_doc",
            "hf_overrides",
        )
        if getattr(config, name)  # None, or an empty hf_overrides/template_kwargs, is not given
    ]
    if given:
        raise InputError(
            f"{given} apply only to LLM rerankers (decoder checkpoints scored as cross-encoders, "
            "or causal LMs converted with hf_overrides classifier_from_token); this checkpoint "
            "is scored without them. Remove them, or load an LLM reranker."
        )


# -- pure maths ---------------------------------------------------------------------------------
def token_score_weight(lm_head: torch.Tensor, ids: Sequence[int], method: str) -> torch.Tensor:
    """The one-label score weight [1, H] built from LM-head rows ``lm_head`` [V, H], in float32.

    from_2_way_softmax: w = W[t1] − W[t0], so h·w = z_t1 − z_t0 and sigmoid of it is the t1
    entry of softmax([z_t0, z_t1]). no_post_processing (one token): w = W[t].
    """
    # NOTE: like vLLM's converted head, this skips any final_logit_softcapping (Gemma 2/3) and
    # LM-head bias; the real rerankers (Qwen, Gemma 1, Qwen2) have neither.
    rows = lm_head[list(ids)].float()  # [T, H]
    if method == "from_2_way_softmax":
        return (rows[1] - rows[0]).unsqueeze(0)  # [1, H]
    return rows  # [1, H]


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token [B] from ``mask`` [B, L] (either padding side)."""
    positions = torch.arange(mask.shape[1], device=mask.device)  # [L]
    return (mask.long() * positions).argmax(dim=1)  # [B]


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One float32 vector per sequence [B, H] from ``hidden`` [B, L, H] and ``mask`` [B, L]."""
    h = hidden.float()
    if pooling == "last":
        rows = torch.arange(h.shape[0], device=h.device)
        return h[rows, last_token_index(mask)]  # [B, H]
    if pooling == "mean":
        m = mask.to(h.dtype).unsqueeze(-1)  # [B, L, 1]
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # [B, H]
    first = (mask.long() * torch.arange(mask.shape[1], 0, -1, device=mask.device)).argmax(dim=1)
    return h[torch.arange(h.shape[0], device=h.device), first]  # [B, H] first real token


def bidirectional_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask [B, 1, L, L]: every token sees every real token, none sees padding.

    transformers uses a 4D mask as given (no causal triangle is added), and SDPA only falls back
    to its causal kernel when no mask is passed; so this is how a decoder runs bidirectionally.
    """
    blocked = (mask == 0)[:, None, None, :]  # [B, 1, 1, L]
    bias = torch.zeros(blocked.shape, dtype=dtype, device=mask.device)
    bias = bias.masked_fill(blocked, torch.finfo(dtype).min)  # [B, 1, 1, L]
    return bias.expand(mask.shape[0], 1, mask.shape[1], mask.shape[1])  # [B, 1, L, L]


# -- text caps ----------------------------------------------------------------------------------
def truncate_text_to_tokens(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_tokens`` content tokens (special tokens not counted).

    As vLLM's ``truncate_text_to_tokens``: cut at the character offset where the last kept token
    ends (the tokenizer's offset mapping), and repeat until re-tokenizing fits, since a cut can
    change how the end of the text merges. Returns the text and whether it was cut.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            "max_tokens_per_query / max_tokens_per_doc need a fast tokenizer (offset mappings); "
            "this checkpoint has only a slow one. Drop the option or add a tokenizer.json."
        )
    cut = False
    while True:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text, cut
        end = offsets[max_tokens - 1][1] if max_tokens > 0 else 0
        # Guard against a tokenizer whose offsets don't shrink the text: drop a character.
        text = text[: min(end, len(text) - 1)]
        cut = True


# -- the backend --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Prepared:
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
        self._check_decoder()
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
    def _check_decoder(self) -> None:
        disk = _read_json(self.info.path / "config.json")
        disk_arch = tuple((disk or {}).get("architectures") or ()) if isinstance(disk, dict) else ()
        if self.spec.tokens and not (
            self.info.model_type in DECODER_MODEL_TYPES
            or any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in disk_arch)
        ):
            raise UnsupportedScoreType(
                f"classifier_from_token reads a causal LM's token logits, but {self.info.path} "
                f"is {list(disk_arch) or self.info.model_type!r}, not a decoder LM. Drop "
                "hf_overrides for an encoder cross-encoder."
            )

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
    ) -> Prepared:
        """Render and tokenize every pair, applying the text caps and the length limit."""
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
            )
            return Prepared(
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
            return Prepared(input_ids=ids, prompts=prompts, truncated=truncated)
        over = [i for i, seq in enumerate(ids) if len(seq) > self._max_length]
        if over and self.config.overflow == "error":
            i = over[0]
            raise InputTooLongError(
                f"pair {i} is {len(ids[i])} tokens after templating, over the limit of "
                f"{self._max_length} ({len(over)} of {len(ids)} pairs are too long). Shorten it, "
                "load with max_tokens_per_doc=, or with overflow='truncate' to cut the document "
                "and flag the result."
            )
        for i in over:
            ids[i] = self._fit(pair_q[i], ds[i], self._max_length)
            prompts[i] = None  # no longer the render of the caller's texts
            truncated[i] = True
        return Prepared(input_ids=ids, prompts=prompts, truncated=truncated)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, ids: list[list[int]]) -> torch.Tensor:
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
            return pool_hidden(hidden, mask, self.spec.pooling)  # [B, H]

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Head logits [B, C] in float32 from pooled states [B, H] (vLLM's fp32 score head)."""
        out = pooled.float() @ self.weight.T  # [B, C]
        return out + self.bias if self.bias is not None else out

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
        prep = self.prepare(queries, documents, query_index, truncate_prompt_tokens)
        empty = [i for i, seq in enumerate(prep.input_ids) if not seq]
        if empty:
            raise InputError(
                f"pair {empty[0]} has no tokens (empty query and document, no template). Give "
                "it text or a score template."
            )
        lengths = [len(s) for s in prep.input_ids]
        scores = [0.0] * len(lengths)
        for batch in plan_batches(
            lengths,
            max_batch_size=self.config.batch_size,
            max_tokens_per_batch=self.config.max_tokens_per_batch,
        ):
            logits = self.logits(self.forward([prep.input_ids[i] for i in batch]))  # [B, C]
            values = finalize_logits(logits, self.activation, use_activation=use_activation)
            for i, v in zip(batch, values.tolist(), strict=True):
                scores[i] = float(v)
            if progress is not None:
                progress(len(batch))
        return [
            ScoreResult(
                index=i, score=scores[i], truncated=prep.truncated[i], num_tokens=lengths[i]
            )
            for i in range(len(lengths))
        ]
