"""Remote mode: the ``Scorer`` methods over vLLM, Cohere, Jina, TEI or Infinity rerank endpoints.

Needs the ``remote`` extra (httpx)::

    from engine import RemoteScorer
    remote = RemoteScorer("http://localhost:8000", api="vllm-rerank")
    remote.rerank("what is BM25?", ["a ranking function", "a cat"], top_n=1)
"""

from __future__ import annotations

from .adapters import ADAPTERS, Adapter, RemoteCall, get_adapter
from .driver import HttpDriver, RetryPolicy
from .scorer import RemoteConfig, RemoteScorer

__all__ = [
    "ADAPTERS",
    "Adapter",
    "HttpDriver",
    "RemoteCall",
    "RemoteConfig",
    "RemoteScorer",
    "RetryPolicy",
    "get_adapter",
]
