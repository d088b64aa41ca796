"""``ScorerRerank``: a LlamaIndex node postprocessor that reranks with the engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_index.core.instrumentation as instrument
from llama_index.core.bridge.pydantic import Field, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle

from engine.errors import InputError
from engine.fusion import Fused
from engine.integrations import SupportsRerank, check_sequence, copy_metadata
from engine.media import text_and_image
from engine.types import RerankResult
from engine.wrapper_fields import first_stage_value

from ._base import HybridFields, RerankFields, ScorerFields

__all__ = ["ScorerRerank"]

# The framework convention (as in its own rerankers); the package re-exports without __all__.
dispatcher = instrument.get_dispatcher(__name__)  # type: ignore[attr-defined]


class ScorerRerank(ScorerFields, RerankFields, HybridFields, BaseNodePostprocessor):
    """Rerank retrieved nodes with a local (or remote) scorer, best first.

    Returns new ``NodeWithScore`` objects over copies of the nodes (same ``id_``, metadata
    deep-copied), with ``score`` the engine's score as a Python float; the input nodes are never
    changed. With ``keep_retrieval_score`` the first-stage score is kept in the copy's metadata
    under ``retrieval_score_key``, a key excluded from both the LLM and the embedding text, so it
    never leaks into a prompt. With ``hybrid="rrf"`` or ``"blend"`` the score is the model's
    fused with the first stage's (each node's ``score``, or ``metadata[first_stage_key]``; the
    input order where a node has no score), and the model's own score is kept in
    ``metadata[model_score_key]``, excluded from both texts likewise. Emits
    ``ReRankStartEvent``/``ReRankEndEvent`` and the legacy
    ``CBEventType.RERANKING`` callback on every path, the empty one included.

    Example:
        >>> query_engine = index.as_query_engine(
        ...     similarity_top_k=20,
        ...     node_postprocessors=[ScorerRerank(model="path/to/cross-encoder", top_n=3)],
        ... )  # doctest: +SKIP
    """

    scorer: SupportsRerank | None = Field(
        default=None,
        description="A ready scorer (engine.Scorer or a remote scorer), shared as is; instead "
        "of model. Not serialised by to_dict().",
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Which metadata goes into the text the model reads (node.get_content).",
    )
    keep_retrieval_score: bool = Field(
        default=False,
        description="Keep the first-stage score in metadata[retrieval_score_key] of the copy.",
    )
    retrieval_score_key: str = Field(
        default="retrieval_score",
        description="Metadata key for keep_retrieval_score (excluded from LLM and embed text).",
    )

    @classmethod
    def class_name(cls) -> str:
        return "ScorerRerank"

    @field_validator("retrieval_score_key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if not value:
            raise InputError("retrieval_score_key must be a non-empty string.")
        return value

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | str | None = None
    ) -> list[NodeWithScore]:
        query_bundle = _as_bundle(query_bundle)
        query, texts = self._texts(nodes, query_bundle)
        with self._rerank_events(nodes, query_bundle) as out:
            if self.hybrid is None:
                ranked = self._scorer_source().rerank(query, texts, **self._rerank_options())
                out.extend(self._scored_nodes(nodes, ranked))
            else:
                every = self._scorer_source().rerank(query, texts, top_n=None,
                                                     score_threshold=None,
                                                     **self._scoring_options())
                out.extend(self._hybrid_nodes(nodes, every))
        return out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | str | None = None
    ) -> list[NodeWithScore]:
        query_bundle = _as_bundle(query_bundle)
        query, texts = self._texts(nodes, query_bundle)
        with self._rerank_events(nodes, query_bundle) as out:
            if self.hybrid is None:
                ranked = await self._scorer_source().arerank(query, texts,
                                                             **self._rerank_options())
                out.extend(self._scored_nodes(nodes, ranked))
            else:
                every = await self._scorer_source().arerank(query, texts, top_n=None,
                                                            score_threshold=None,
                                                            **self._scoring_options())
                out.extend(self._hybrid_nodes(nodes, every))
        return out

    # -- translation -----------------------------------------------------------------------------
    def _texts(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[Any]]:
        if query_bundle is None:
            raise InputError(
                "ScorerRerank needs a query: call postprocess_nodes(nodes, query_str=...) or "
                "pass query_bundle=."
            )
        query = query_bundle.query_str
        if not isinstance(query, str):
            raise InputError(f"query_bundle.query_str must be a string, got {query!r:.60}.")
        nodes = check_sequence(nodes, name="nodes")
        for i, nws in enumerate(nodes):
            if not isinstance(nws, NodeWithScore):
                raise InputError(
                    f"nodes[{i}] is {type(nws).__name__}, not a NodeWithScore. Wrap nodes as "
                    "NodeWithScore(node=..., score=...)."
                )
        texts = [_as_input(nws.node, nws.node.get_content(metadata_mode=self.metadata_mode), i)
                 for i, nws in enumerate(nodes)]
        return query, texts

    def _scored_nodes(
        self, nodes: list[NodeWithScore], ranked: list[RerankResult]
    ) -> list[NodeWithScore]:
        return [self._scored_copy(nodes[r.index], r.index, r.score) for r in ranked]

    def _hybrid_nodes(
        self, nodes: list[NodeWithScore], every: list[RerankResult]
    ) -> list[NodeWithScore]:
        key = self.first_stage_key
        first: list[float] | None
        if key is not None:
            first = [first_stage_value(n.node.metadata.get(key), key=key,
                                       where=f"nodes[{i}] (id_={n.node.id_!r})")
                     for i, n in enumerate(nodes)]
        elif all(n.score is not None for n in nodes):
            first = [float(n.score) for n in nodes]  # type: ignore[arg-type]
        else:
            first = None  # the retriever's order is all there is
        fused: list[Fused] = self._fuse(every, first, top_n=self.top_n,
                                        score_threshold=self.score_threshold)
        return [self._scored_copy(nodes[f.index], f.index, f.score, model_score=f.model_score)
                for f in fused]

    def _scored_copy(self, nws: NodeWithScore, index: int, score: float,
                     model_score: float | None = None) -> NodeWithScore:
        node = nws.node
        # A shallow copy of the node with its own metadata and exclusion lists: nothing the
        # caller (or a later step) changes on the result reaches the input node.
        update: dict[str, Any] = {
            "metadata": copy_metadata(node.metadata, where=f"nodes[{index}]"),
            "excluded_llm_metadata_keys": list(node.excluded_llm_metadata_keys),
            "excluded_embed_metadata_keys": list(node.excluded_embed_metadata_keys),
        }
        kept: dict[str, float | None] = {}
        if self.keep_retrieval_score:
            kept[self.retrieval_score_key] = None if nws.score is None else float(nws.score)
        if model_score is not None:
            kept[self.model_score_key] = float(model_score)
        for key, value in kept.items():
            update["metadata"][key] = value
            # Excluded from both texts, so no score ever reaches a prompt or an embedding.
            for field in ("excluded_llm_metadata_keys", "excluded_embed_metadata_keys"):
                if key not in update[field]:
                    update[field].append(key)
        return NodeWithScore(node=node.model_copy(update=update), score=float(score))

    @contextmanager
    def _rerank_events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> Iterator[list[NodeWithScore]]:
        """Start and end events around the body, which fills the yielded list with the result.

        The end events fire on every successful path, the empty one included; on an error the
        callback event is closed with the exception (the dispatcher span records it).
        """
        model_name = self._scorer_source().model_name
        top_n = self.top_n if self.top_n is not None else len(nodes)
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=model_name)
        )
        result: list[NodeWithScore] = []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model_name,
                EventPayload.QUERY_STR: query_bundle.query_str if query_bundle else None,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            yield result
            event.on_end(payload={EventPayload.NODES: result})
        dispatcher.event(ReRankEndEvent(nodes=result))


def _as_input(node: Any, text: str, index: int) -> Any:
    """An ``ImageNode`` as vLLM's ``{"content": [text, image]}`` (its image as a URL); any
    other node as its text. A text-only model refuses the image with vLLM's message."""
    if not isinstance(node, ImageNode):
        return text
    if node.image_url:
        url = node.image_url
    elif node.image:  # base64, as LlamaIndex stores it
        url = f"data:{node.image_mimetype or 'image/png'};base64,{node.image}"
    elif node.image_path:
        url = Path(node.image_path).resolve().as_uri()
    else:
        raise InputError(f"nodes[{index}] is an ImageNode with no image (image, image_url or "
                         "image_path); give it one, or use a TextNode.")
    return text_and_image(text, url)


def _as_bundle(query_bundle: Any) -> QueryBundle | None:
    """LlamaIndex passes a plain query string through as query_bundle; accept it as one."""
    if isinstance(query_bundle, str):
        return QueryBundle(query_str=query_bundle)
    if query_bundle is not None and not isinstance(query_bundle, QueryBundle):
        raise InputError(
            f"query_bundle must be a QueryBundle or a query string, got "
            f"{type(query_bundle).__name__}."
        )
    return query_bundle
