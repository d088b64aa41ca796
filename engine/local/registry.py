"""ScoreType → backend class. Explicit, so a lookup failure can list the options."""

from __future__ import annotations

from ..config import ScorerConfig
from ..types import ScoreType
from .base import LocalBackend
from .bi_encoder import BiEncoderBackend
from .cross_encoder import CrossEncoderBackend
from .late_interaction import LateInteractionBackend
from .llm_reranker import LLMRerankerBackend, is_llm_reranker, refuse_llm_only_options
from .loading import CheckpointInfo

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
