"""Load-time configuration: frozen, keyword-only, validated once at construction."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from .errors import InputError
from .media import MediaPolicy
from .types import ScoreType

__all__ = ["HF_OVERRIDE_KEYS", "ScorerConfig", "check_options"]

# The vLLM ``--hf-overrides`` keys that turn an LLM into a reranker (spec §2.3); any other key
# would be silently meaningless here, so it is refused.
HF_OVERRIDE_KEYS = frozenset({
    "architectures", "classifier_from_token", "method", "is_original_qwen3_reranker",
    "use_sep_token",
})


def _freeze(value: Any) -> Any:
    """A read-only deep copy: dicts become MappingProxyType, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _check_mapping(name: str, value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InputError(f"{name} must be a dict with string keys or None, got {value!r:.80}.")
    frozen: Mapping[str, Any] = _freeze(value)
    return frozen


@dataclass(frozen=True, kw_only=True)
class ScorerConfig:
    """How a local model is loaded and run. Every field has a safe default.

    Attributes:
        score_type: "cross-encoder", "late-interaction", "bi-encoder", or None to detect it from
            the checkpoint's files.
        device: "auto" (cuda, then mps, then cpu) or a torch device string.
        dtype: "auto" (exact: float32 on CPU, even on AMX CPUs where bfloat16 would keep
            rankings and run ~2x faster, so scores equal transformers'/vLLM's float32 ones to
            1e-5 and do not depend on batch company or on the machine; bfloat16/float16 on
            GPU), "fast" (bfloat16 where the hardware runs it natively: GPUs, CPUs with AMX or
            AVX512-BF16; the opt-in fast mode), "float32", "bfloat16", "float16".
        max_length: cap on tokens per model input (pair prompt, or each text); None = the model's.
        batch_size: most sequences per forward pass.
        max_tokens_per_batch: most padded tokens per forward pass (bounds memory).
        overflow: "truncate" fits over-long input (document side first) and flags it;
            "error" raises InputTooLongError instead.
        trust_remote_code: run a checkpoint's own Python code; off unless you trust it.
        revision: hub revision when ``model`` is a hub id in the local cache.
        colbert_markers: late-interaction only; add ColBERT's [Q]/[D] markers and [MASK] query
            augmentation (PyLate / colbert-ir parity) instead of vLLM's plain tokens.
        query_length: with colbert_markers, queries are padded with [MASK] to this many tokens.
        template: LLM rerankers only; the score template, as a bundled name (see
            ``engine.templates.bundled_templates()``), a ``.jinja`` path or jinja source. None
            picks the family's template from the checkpoint's config when it is a known one.
        auto_template: with template None, pick a known family's template (True, Scorer's
            default) or use none at all (False: vLLM applies only a template it is given, so
            ``engine.LLM`` and ``scorer serve`` turn this off).
        hf_overrides: vLLM's ``--hf-overrides`` for LLM rerankers: ``architectures``,
            ``classifier_from_token``, ``method`` ("from_2_way_softmax" or "no_post_processing"),
            ``is_original_qwen3_reranker``, ``use_sep_token``. Stored read-only.
        instruction: LLM rerankers only; passed to the template as ``instruction`` (vLLM's
            request field of that name). None keeps the template's default.
        template_kwargs: LLM rerankers only; more keyword arguments for the template (vLLM's
            ``chat_template_kwargs``); an ``instruction`` here wins over ``instruction=``.
        max_tokens_per_query: LLM rerankers only; cut each query TEXT to this many tokens before
            templating (vLLM's request field); None = no cap. Cut pairs are flagged truncated.
        max_tokens_per_doc: the same for each document, so the template's suffix survives.
        non_finite: a NaN or ±inf score (NaN weights, half-precision overflow) raises
            NonFiniteScoreError ("error", the default), or is kept and ranked last ("last").
        enable_lora: allow LoRA adapters on this model (vLLM's ``enable_lora``): register them
            with ``lora_modules``/``lora`` or per call, and pick one per call. Implied by both.
        lora: a PEFT adapter folder applied to every call that names no other adapter
            (registered under its folder name).
        lora_modules: name → PEFT adapter folder, registered at load (vLLM's ``--lora-modules
            name=path``); calls pick one by name. Stored read-only.
        max_lora_rank: refuse adapters of a higher rank (vLLM's ``max_lora_rank``); None = any.
        allowed_local_media_path: multimodal models; ``file://`` image URLs are read only below
            this directory (vLLM's ``--allowed-local-media-path``); None refuses them.
        allow_http_media: multimodal models; fetch ``http(s)://`` image URLs (off: refused).
        allowed_media_domains: with allow_http_media, only these host names; None = any.
        media_fetch_timeout: seconds for one image fetch (vLLM's default, 5).
        max_media_bytes: the largest encoded image accepted (fetched, read or base64).
        max_image_pixels: the largest decoded image, width × height (decompression bombs).
        doc_cache_size: bi-encoder and late-interaction only; keep the encodings of up to this
            many documents in memory (least recently used dropped first), so scoring documents
            seen before skips the model. 0 (the default) turns the cache off. Each entry holds
            one vector (bi-encoder) or one vector per token (late interaction, float32).
    """

    score_type: ScoreType | None = None
    device: str = "auto"
    dtype: Any = "auto"
    max_length: int | None = None
    batch_size: int = 32
    max_tokens_per_batch: int = 8192
    overflow: Literal["truncate", "error"] = "truncate"
    trust_remote_code: bool = False
    revision: str | None = None
    colbert_markers: bool = False
    query_length: int = 32
    template: str | None = None
    auto_template: bool = True
    hf_overrides: Mapping[str, Any] | None = None
    instruction: str | None = None
    template_kwargs: Mapping[str, Any] | None = None
    max_tokens_per_query: int | None = None
    max_tokens_per_doc: int | None = None
    doc_cache_size: int = 0
    non_finite: Literal["error", "last"] = "error"
    enable_lora: bool = False
    lora: str | None = None
    lora_modules: Mapping[str, str] | None = None
    max_lora_rank: int | None = None
    allowed_local_media_path: str | None = None
    allow_http_media: bool = False
    allowed_media_domains: tuple[str, ...] | None = None
    media_fetch_timeout: float = 5.0
    max_media_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.score_type is not None:
            object.__setattr__(self, "score_type", ScoreType.parse(self.score_type))
        for name in ("batch_size", "max_tokens_per_batch", "query_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        if self.max_length is not None and (
            isinstance(self.max_length, bool) or not isinstance(self.max_length, int)
            or self.max_length < 2
        ):
            raise InputError(f"max_length must be an int ≥ 2 or None, got {self.max_length!r}.")
        if self.non_finite not in ("error", "last"):
            raise InputError(f"non_finite must be 'error' or 'last', got {self.non_finite!r}.")
        if self.overflow not in ("truncate", "error"):
            raise InputError(f"overflow must be 'truncate' or 'error', got {self.overflow!r}.")
        if isinstance(self.template, os.PathLike):
            object.__setattr__(self, "template", os.fspath(self.template))
        if self.template is not None and (not isinstance(self.template, str) or not self.template):
            raise InputError(
                f"template must be a bundled template name, a .jinja path or jinja source, got "
                f"{self.template!r:.80}."
            )
        if self.instruction is not None and not isinstance(self.instruction, str):
            raise InputError(f"instruction must be a string or None, got {self.instruction!r:.80}.")
        object.__setattr__(self, "hf_overrides", _check_mapping("hf_overrides", self.hf_overrides))
        object.__setattr__(
            self, "template_kwargs", _check_mapping("template_kwargs", self.template_kwargs)
        )
        unknown = sorted(set(self.hf_overrides or ()) - HF_OVERRIDE_KEYS)
        if unknown:
            raise InputError(
                f"hf_overrides has unsupported key(s) {unknown}; supported: "
                f"{sorted(HF_OVERRIDE_KEYS)} (the vLLM keys that turn an LLM into a reranker)."
            )
        if (isinstance(self.doc_cache_size, bool) or not isinstance(self.doc_cache_size, int)
                or self.doc_cache_size < 0):
            raise InputError(
                f"doc_cache_size must be an int ≥ 0 (0 turns the cache off), got "
                f"{self.doc_cache_size!r}."
            )
        for name in ("max_tokens_per_query", "max_tokens_per_doc"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise InputError(f"{name} must be a positive int or None, got {value!r}.")
        _check_lora_and_media(self)

    def media_policy(self) -> MediaPolicy:
        """Where this model may read images from (multimodal models; see engine.media)."""
        return MediaPolicy(
            allowed_local_media_path=self.allowed_local_media_path,
            allow_http=self.allow_http_media,
            allowed_media_domains=tuple(self.allowed_media_domains or ()),
            fetch_timeout=self.media_fetch_timeout,
            max_bytes=self.max_media_bytes,
            max_pixels=self.max_image_pixels,
        )


def _check_lora_and_media(config: ScorerConfig) -> None:
    """The LoRA and media fields (frozen, so normalised values are set with object.__setattr__)."""
    if isinstance(config.lora, os.PathLike):
        object.__setattr__(config, "lora", os.fspath(config.lora))
    if config.lora is not None and (not isinstance(config.lora, str) or not config.lora):
        raise InputError(f"lora must be a PEFT adapter folder or None, got {config.lora!r:.80}.")
    modules = _check_mapping("lora_modules", config.lora_modules)
    for name, path in (modules or {}).items():
        if not name or not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise InputError(
                f"lora_modules maps adapter names to PEFT folders (name=path); got "
                f"{name!r}: {path!r:.80}."
            )
    if modules is not None:
        modules = MappingProxyType({k: os.fspath(v) for k, v in modules.items()})
    object.__setattr__(config, "lora_modules", modules)
    if config.lora is not None or modules:
        object.__setattr__(config, "enable_lora", True)
    rank = config.max_lora_rank
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise InputError(f"max_lora_rank must be a positive int or None, got {rank!r}.")
    if isinstance(config.allowed_local_media_path, os.PathLike):
        object.__setattr__(
            config, "allowed_local_media_path", os.fspath(config.allowed_local_media_path)
        )
    domains = config.allowed_media_domains
    if domains is not None:
        if isinstance(domains, str) or not all(isinstance(d, str) and d for d in domains):
            raise InputError(
                f"allowed_media_domains must be a list of host names, got {domains!r:.80}."
            )
        object.__setattr__(config, "allowed_media_domains", tuple(domains))
    config.media_policy()  # validates the directory, the caps and the timeout


def check_options(options: Mapping[str, Any], *, what: str = "option") -> None:
    """Refuse keyword arguments that are not fields of :class:`ScorerConfig`, listing them.

    ``what`` names the arguments in the message ("option", "load option", "LLM argument").
    """
    fields = sorted(ScorerConfig.__dataclass_fields__)
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise InputError(
            f"Unknown {what}(s) {unknown}; the options of Scorer.load are {fields}."
        )
