"""ScoreType → backend class, and loading a checkpoint into the backend that serves it.

Explicit, so a lookup failure can list the options.
"""

from __future__ import annotations

from ..config import ScorerConfig
from ..errors import InputError
from ..types import ScoreType
from .base import LocalBackend
from .bi_encoder import BiEncoderBackend
from .checkpoint import (
    CheckpointInfo,
    check_score_type_supported,
    detect_score_type,
    inspect_checkpoint,
    resolve_model_path,
)
from .conversion import apply_hf_overrides, is_llm_reranker, refuse_llm_only_options
from .cross_encoder import CrossEncoderBackend
from .devices import resolve_device, resolve_dtype
from .gte import GteNewBackend, is_gte_new
from .jina_vl import JinaVLBackend, is_jina_vl
from .late_interaction import LateInteractionBackend
from .llm_reranker import LLMRerankerBackend
from .lora_backend import with_lora
from .qwen_vl import Qwen3VLRerankerBackend, is_qwen3_vl

__all__ = ["BACKENDS", "backend_class", "load_backend"]

BACKENDS: dict[ScoreType, type[LocalBackend]] = {
    ScoreType.CROSS_ENCODER: CrossEncoderBackend,
    ScoreType.LATE_INTERACTION: LateInteractionBackend,
    ScoreType.BI_ENCODER: BiEncoderBackend,
}


def backend_class(
    score_type: ScoreType, info: CheckpointInfo, config: ScorerConfig
) -> type[LocalBackend]:
    """The backend for this score type and checkpoint.

    Cross-encoder checkpoints of decoder LLMs (and causal LMs converted with hf_overrides) go to
    the LLM reranker backend; encoder cross-encoders (BERT, RoBERTa, XLM-R) stay on
    CrossEncoderBackend. Options that only LLM rerankers read are refused elsewhere.
    """
    if score_type is ScoreType.CROSS_ENCODER:
        native = _native_cross_encoder(info, config)
        if native is not None:
            return native
    llm = score_type is ScoreType.CROSS_ENCODER and is_llm_reranker(info)
    refuse_llm_only_options(config, llm=llm)
    return LLMRerankerBackend if llm else BACKENDS[score_type]


def _only_architecture_override(config: ScorerConfig, what: str) -> None:
    """vLLM serves these with ``--hf-overrides '{"architectures": [...]}'``; accept just that."""
    extra = sorted(set(config.hf_overrides or ()) - {"architectures"})
    if extra:
        raise InputError(
            f"hf_overrides {extra} don't apply to {what}; only 'architectures' (vLLM's spelling "
            "of the architecture name) is accepted for it. Remove the other keys."
        )


def _native_cross_encoder(info: CheckpointInfo, config: ScorerConfig) -> type[LocalBackend] | None:
    """Architectures implemented here without transformers classes or remote code."""
    if is_gte_new(info):
        _only_architecture_override(config, "a GteNew cross-encoder")
        refuse_llm_only_options(config, llm=False, allow=("hf_overrides",))
        return GteNewBackend
    if is_jina_vl(info):
        # Its score template is the model's own (vLLM's get_score_template); text caps apply.
        _only_architecture_override(config, "jina-reranker-m0")
        refuse_llm_only_options(
            config, llm=False, allow=("hf_overrides", "max_tokens_per_query", "max_tokens_per_doc")
        )
        return JinaVLBackend
    if is_qwen3_vl(info):
        return Qwen3VLRerankerBackend  # an LLM reranker: templates, overrides and caps apply
    return None


def load_backend(model: str, config: ScorerConfig) -> LocalBackend:
    """Find ``model`` (a folder or a cached hub id), read it, and load the backend serving it.

    vLLM's hf_overrides are merged into the config before anything reads it; the score type is
    ``config.score_type`` or detected from the checkpoint's files.
    """
    path = resolve_model_path(model, revision=config.revision)
    info = apply_hf_overrides(inspect_checkpoint(path), config.hf_overrides)
    score_type = config.score_type or detect_score_type(info)
    check_score_type_supported(info, score_type)
    device = resolve_device(config.device)
    cls = backend_class(score_type, info, config)
    if config.enable_lora:
        cls = with_lora(cls)  # adapters by name on this base, one per call (engine.local.lora)
    backend = cls(
        info=info, config=config, device=device, dtype=resolve_dtype(config.dtype, device)
    )
    for module in backend.modules():
        # Inference only: with no parameter needing a gradient, no stage (a head outside the
        # forward's inference_mode, a call on another thread) ever builds an autograd graph.
        module.requires_grad_(False)
    if backend.max_length < backend.min_length:
        raise InputError(
            f"max_length={backend.max_length} is below {backend.min_length}, the fewest tokens "
            f"this model's inputs can be cut to (its special tokens plus one token of text). "
            f"Pass max_length={backend.min_length} or more, or leave it unset."
        )
    return backend
