"""LlamaIndex integration of scorer: a node postprocessor and an embedding model on one engine.

::

    from llama_index.core import VectorStoreIndex
    from llamaindex_scorer import ScorerEmbedding, ScorerRerank

    index = VectorStoreIndex(nodes, embed_model=ScorerEmbedding())
    query_engine = index.as_query_engine(
        similarity_top_k=20,
        node_postprocessors=[ScorerRerank(model="path/to/reranker", top_n=3)],
    )

Each class takes ``model=`` (loaded on first use, weights shared per process) or a ready
``scorer=`` (an ``engine.Scorer`` or a remote scorer, shared between instances).
"""

from __future__ import annotations

from engine._optional import require

require("llama_index.core", extra="llamaindex", purpose="llamaindex_scorer")

from .embeddings import ScorerEmbedding  # noqa: E402
from .rerank import ScorerRerank  # noqa: E402

__all__ = ["ScorerEmbedding", "ScorerRerank"]
