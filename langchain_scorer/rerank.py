"""``ScorerRerank``, a document compressor, and ``ScorerCrossEncoder``, a BaseCrossEncoder."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.cross_encoders import BaseCrossEncoder
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import field_validator

from engine.errors import InputError
from engine.fusion import Fused
from engine.integrations import SupportsRerank, check_sequence, copy_metadata
from engine.media import text_and_image
from engine.types import RerankResult
from engine.wrapper_fields import first_stage_value

from ._base import HybridFields, RerankFields, ScorerFields, ScoringFields

__all__ = ["ScorerCrossEncoder", "ScorerRerank"]


class ScorerRerank(ScorerFields, RerankFields, HybridFields, BaseDocumentCompressor):
    """Rerank LangChain documents with a local (or remote) scorer, best first.

    Each returned document is a copy (same ``id``, metadata deep-copied) with
    ``metadata[score_key]`` set to its score as a Python float; the caller's documents are never
    changed. With ``hybrid="rrf"`` or ``"blend"`` that score is the model's fused with the first
    stage's (the input order, or ``metadata[first_stage_key]``), and the model's own score is
    kept in ``metadata[model_score_key]``. Scores are the engine's: sigmoid for cross-encoders,
    cosine for bi-encoders, MaxSim for late interaction (``use_activation=False`` gives raw
    logits / unnormalised MaxSim).

    Example:
        >>> from langchain_classic.retrievers import ContextualCompressionRetriever
        >>> reranker = ScorerRerank(model="path/to/cross-encoder", top_n=3)  # doctest: +SKIP
        >>> retriever = ContextualCompressionRetriever(
        ...     base_compressor=reranker, base_retriever=vector_store.as_retriever(k=20)
        ... )  # doctest: +SKIP
    """

    scorer: SupportsRerank | None = None
    """A ready scorer (``engine.Scorer`` or a remote scorer), shared as is; instead of ``model``."""

    score_key: str = "relevance_score"
    """Metadata key the score is written to (an existing value there is replaced)."""

    document_template: str | None = None
    """Text sent to the model, as a ``str.format`` template over ``page_content`` and metadata
    keys, e.g. ``"{title}\\n{page_content}"``. None sends ``page_content``. A document without a
    key the template names is an error, not a silent blank."""

    image_key: str | None = None
    """Metadata key holding an image URL (``data:``, ``file://`` or http(s) as the scorer
    allows) for rerankers that read images (Qwen3-VL, jina-m0). A document with that key is
    scored as vLLM's ``{"content": [text, image]}``; None (default) sends text only. A text-only
    model refuses such documents with vLLM's message rather than dropping the image."""

    @field_validator("score_key")
    @classmethod
    def _check_score_key(cls, value: str) -> str:
        if not value:
            raise InputError("score_key must be a non-empty string.")
        return value

    @field_validator("document_template")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Return copies of the best ``top_n`` documents (at or above the threshold), best first.

        Empty input returns [] without loading the model.

        Raises:
            InputError: ``query`` is not a string, an item is not a Document, or a document
                lacks a metadata key that ``document_template`` names.
        """
        docs, texts = self._texts(documents, query)
        if self.hybrid is None:
            ranked = self._scorer_source().rerank(query, texts, **self._rerank_options())
            return [self._scored_copy(docs[r.index], r.index, r.score) for r in ranked]
        every = self._scorer_source().rerank(query, texts, top_n=None, score_threshold=None,
                                             **self._scoring_options())
        return self._hybrid_copies(docs, every)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` through the scorer's own async path."""
        docs, texts = self._texts(documents, query)
        if self.hybrid is None:
            ranked = await self._scorer_source().arerank(query, texts, **self._rerank_options())
            return [self._scored_copy(docs[r.index], r.index, r.score) for r in ranked]
        every = await self._scorer_source().arerank(query, texts, top_n=None,
                                                    score_threshold=None,
                                                    **self._scoring_options())
        return self._hybrid_copies(docs, every)

    # -- translation -----------------------------------------------------------------------------
    def _texts(self, documents: Sequence[Document], query: str) -> tuple[list[Document], list[Any]]:
        if not isinstance(query, str):
            raise InputError(f"query must be a string, got {type(query).__name__}.")
        docs = check_sequence(documents, name="documents")
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise InputError(
                    f"documents[{i}] is {type(doc).__name__}, not a langchain_core Document. "
                    "Wrap text as Document(page_content=...)."
                )
        if self.document_template is None:
            texts = [doc.page_content for doc in docs]
        else:
            texts = [render_document(self.document_template, doc, i) for i, doc in enumerate(docs)]
        if self.image_key is None:
            return docs, texts
        return docs, [_with_image(text, doc, self.image_key, i) for i, (text, doc) in
                      enumerate(zip(texts, docs, strict=True))]

    def _hybrid_copies(self, docs: list[Document], every: list[RerankResult]) -> list[Document]:
        first = None
        if self.first_stage_key is not None:
            key = self.first_stage_key
            first = [first_stage_value(doc.metadata.get(key), key=key,
                                       where=f"documents[{i}] (id={doc.id!r})")
                     for i, doc in enumerate(docs)]
        fused: list[Fused] = self._fuse(every, first, top_n=self.top_n,
                                        score_threshold=self.score_threshold)
        return [self._scored_copy(docs[f.index], f.index, f.score, model_score=f.model_score)
                for f in fused]

    def _scored_copy(self, doc: Document, index: int, score: float,
                     model_score: float | None = None) -> Document:
        # model_copy keeps Document.id; the metadata is deep-copied so later edits to the
        # result never reach the caller's document.
        metadata = copy_metadata(doc.metadata, where=f"documents[{index}]")
        metadata[self.score_key] = float(score)
        if model_score is not None:
            metadata[self.model_score_key] = float(model_score)
        return doc.model_copy(update={"metadata": metadata})


class ScorerCrossEncoder(ScorerFields, ScoringFields, BaseCrossEncoder):
    """A ``BaseCrossEncoder`` over the engine, for ``CrossEncoderReranker(model=...)``.

    ``score`` takes (query, document) pairs and returns their scores in order as Python floats;
    pairs sharing one query are scored in one 1:N call.
    """

    scorer: SupportsRerank | None = None
    """A ready scorer (``engine.Scorer`` or a remote scorer), shared as is; instead of ``model``."""

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """Scores of ``text_pairs`` in order; [] for no pairs, without loading the model."""
        return self._scorer_source().score_pairs(text_pairs, **self._scoring_options())

    async def ascore(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """:meth:`score` through the scorer's own async path."""
        return await self._scorer_source().ascore_pairs(text_pairs, **self._scoring_options())


def _with_image(text: str, doc: Document, key: str, index: int) -> Any:
    """vLLM's content item for a document whose metadata names an image; else its text."""
    url = doc.metadata.get(key)
    if url is None:
        return text
    if not isinstance(url, str) or not url:
        raise InputError(f"documents[{index}].metadata[{key!r}] must be an image URL string, "
                         f"got {url!r:.60}.")
    return text_and_image(text, url)


def template_fields(template: str) -> list[str]:
    """The names a ``document_template`` uses; refuses forms that can't name a metadata key."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(
            f"document_template {template!r} is not a valid str.format template ({exc}); "
            "write literal braces as {{ and }}."
        ) from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            # A format spec such as {page_content:>99999999999} would build a huge string.
            raise InputError(
                f"document_template field {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} has a conversion or format spec; only plain "
                "fields like {page_content} or {title} are supported."
            )
        if not name.isidentifier():
            raise InputError(
                f"document_template field {{{name}}} is not a plain name. Use "
                "{page_content} or {some_metadata_key}; positional {} and attribute or index "
                "access ({a.b}, {a[0]}) are not supported."
            )
        names.append(name)
    if not names:
        raise InputError(
            f"document_template {template!r} names no field, so every document would be sent "
            "as the same text. Include {page_content} or a metadata key."
        )
    return names


def render_document(template: str, doc: Document, index: int) -> str:
    """The text of ``doc`` through ``template``; ``page_content`` wins over a metadata key of
    that name."""
    values = {**doc.metadata, "page_content": doc.page_content}
    missing = [name for name in template_fields(template) if name not in values]
    if missing:
        raise InputError(
            f"document_template needs metadata key(s) {missing}, which documents[{index}] "
            f"(id={doc.id!r}) doesn't have; its metadata keys are {sorted(doc.metadata)}. "
            "Add the key to every document, or change the template."
        )
    return template.format_map(values)
