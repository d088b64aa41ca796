"""How a decoder LLM becomes a reranker: vLLM's ``hf_overrides`` and the conversion policy.

Two kinds of checkpoint, as in vLLM (spec §2.3):

* a causal LM converted on load with vLLM's ``hf_overrides`` keys: ``classifier_from_token``
  plus ``method`` (``from_2_way_softmax``: logit = z[t1] − z[t0]; ``no_post_processing`` with
  one token: logit = z[t]), or ``is_original_qwen3_reranker``;
* an already-converted ``*ForSequenceClassification`` (Qwen2/Qwen3/Gemma/Llama ...), and the
  bidirectional Llama of nvidia's nemotron rerankers, which attends without a causal mask and
  mean-pools (its config's ``pooling``).

Everything here reads configs only (no weights): which checkpoints are LLM rerankers, what the
overrides mean, and which bundled score template a known family gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..config import ScorerConfig
from ..errors import InputError, UnsupportedScoreType
from .checkpoint import CheckpointInfo

__all__ = [
    "BIDIRECTIONAL_ARCHITECTURES", "DECODER_MODEL_TYPES", "ConversionSpec", "apply_hf_overrides",
    "auto_template", "check_decoder", "is_llm_reranker", "refuse_llm_only_options",
    "resolve_conversion",
]

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


def refuse_llm_only_options(
    config: ScorerConfig, *, llm: bool, allow: Sequence[str] = ()
) -> None:
    """Templates and text caps exist only for LLM rerankers; refuse them elsewhere, loudly.

    ``allow``: the options this (non-LLM) backend reads anyway, e.g. the caps for JinaVL.
    """
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
        # None, or an empty hf_overrides/template_kwargs, is not given
        if getattr(config, name) and name not in allow
    ]
    if "hf_overrides" in given and set(config.hf_overrides or ()) <= {"architectures"}:
        given.remove("hf_overrides")  # vLLM's architecture rename, as BgeM3EmbeddingModel
    if given:
        raise InputError(
            f"{given} apply only to LLM rerankers (decoder checkpoints scored as cross-encoders, "
            "or causal LMs converted with hf_overrides classifier_from_token); this checkpoint "
            "is scored without them. Remove them, or load an LLM reranker."
        )


def check_decoder(info: CheckpointInfo, spec: ConversionSpec) -> None:
    """Token-logit conversions need a decoder LM's head; refuse them on anything else."""
    disk = info.disk_architectures
    if spec.tokens and not (
        info.model_type in DECODER_MODEL_TYPES
        or any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in disk)
    ):
        raise UnsupportedScoreType(
            f"classifier_from_token reads a causal LM's token logits, but {info.path} "
            f"is {list(disk) or info.model_type!r}, not a decoder LM. Drop "
            "hf_overrides for an encoder cross-encoder."
        )
