"""LangChain integration of scorer: a reranker, a cross-encoder and embeddings on one engine.

::

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_scorer import ScorerEmbeddings, ScorerRerank

    store = InMemoryVectorStore.from_documents(docs, ScorerEmbeddings())
    retriever = ContextualCompressionRetriever(
        base_compressor=ScorerRerank(model="path/to/reranker", top_n=3),
        base_retriever=store.as_retriever(search_kwargs={"k": 20}),
    )

Each class takes ``model=`` (loaded on first use, weights shared per process) or a ready
``scorer=`` (an ``engine.Scorer`` or a remote scorer, shared between instances).
"""

from __future__ import annotations

from engine._optional import require

require("langchain_core", extra="langchain", purpose="langchain_scorer")

from .embeddings import ScorerEmbeddings  # noqa: E402
from .rerank import ScorerCrossEncoder, ScorerRerank  # noqa: E402

__all__ = ["ScorerCrossEncoder", "ScorerEmbeddings", "ScorerRerank"]
