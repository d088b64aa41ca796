"""scorer's engine: one local scoring engine with vLLM's three score types.

Public API (pinned by ``__all__`` and a test)::

    from engine import Scorer
    scorer = Scorer.load("path/to/model")          # score type detected from the checkpoint
    scorer.score("query", ["doc a", "doc b"])      # list[ScoreResult], in input order
    scorer.rerank("query", ["doc a", "doc b"])     # list[RerankResult], best first
    reciprocal_rank_fusion(bm25_scores, model_scores)   # hybrid: fuse a first stage and a model

``engine`` imports no framework (LangChain, LlamaIndex) and no torch until a model is loaded.
"""

from __future__ import annotations

from .config import ScorerConfig
from .errors import (
    InputError,
    InputTooLongError,
    MissingDependency,
    ModelLoadError,
    NonFiniteScoreError,
    PairingError,
    RemoteScoreError,
    ScorerError,
    ScoreTypeDetectionError,
    TemplateError,
    UnsupportedScoreType,
)
from .fusion import blend_scores, reciprocal_rank_fusion
from .llm import LLM, PoolingParams, ScoringOutput, ScoringRequestOutput
from .media import MediaError, MediaNotSupportedError, ScoreContent
from .ranking import rank
from .scorer import DEFAULT_MODEL, Scorer, default_model_path
from .types import CacheInfo, LoraAdapterInfo, LoRARequest, RerankResult, ScoreResult, ScoreType

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Remote mode loads on first use, so `import engine` never pulls in its modules (or httpx).
    if name == "RemoteScorer":
        from .remote import RemoteScorer

        return RemoteScorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CacheInfo",
    "DEFAULT_MODEL",
    "LLM",
    "LoRARequest",
    "LoraAdapterInfo",
    "InputError",
    "InputTooLongError",
    "MediaError",
    "MediaNotSupportedError",
    "MissingDependency",
    "ModelLoadError",
    "NonFiniteScoreError",
    "PairingError",
    "PoolingParams",
    "RemoteScoreError",
    "RemoteScorer",
    "RerankResult",
    "ScoreContent",
    "ScoreResult",
    "ScoreType",
    "ScoreTypeDetectionError",
    "Scorer",
    "ScorerConfig",
    "ScorerError",
    "ScoringOutput",
    "ScoringRequestOutput",
    "TemplateError",
    "UnsupportedScoreType",
    "__version__",
    "blend_scores",
    "default_model_path",
    "rank",
    "reciprocal_rank_fusion",
]
