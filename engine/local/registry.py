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
from .late_interaction import LateInteractionBackend
from .llm_reranker import LLMRerankerBackend

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
    llm = score_type is ScoreType.CROSS_ENCODER and is_llm_reranker(info)
    refuse_llm_only_options(config, llm=llm)
    return LLMRerankerBackend if llm else BACKENDS[score_type]


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
    backend = backend_class(score_type, info, config)(
        info=info, config=config, device=device, dtype=resolve_dtype(config.dtype, device)
    )
    if backend.max_length < backend.min_length:
        raise InputError(
            f"max_length={backend.max_length} is below {backend.min_length}, the fewest tokens "
            f"this model's inputs can be cut to (its special tokens plus one token of text). "
            f"Pass max_length={backend.min_length} or more, or leave it unset."
        )
    return backend
