"""What every LangChain class here shares: where its scorer comes from (engine.wrapper_fields)."""

from __future__ import annotations

from engine.wrapper_fields import HybridFields, RerankFields, ScorerFields, ScoringFields

__all__ = ["HybridFields", "RerankFields", "ScorerFields", "ScoringFields"]
