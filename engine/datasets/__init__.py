"""Evaluation data for reranking (SciFact mini ships in the package) and nDCG@k / recall@k.

See ``scifact_mini/NOTICE.md`` for the data's origin and licences (CC BY 4.0 / ODC-By 1.0).
:func:`load_beir` reads the same layout for a full BEIR set on disk (e.g. all of SciFact).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "RerankDataset",
    "load_beir",
    "load_scifact_mini",
    "mean_ndcg",
    "mean_recall",
    "ndcg_at_k",
    "recall_at_k",
]

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, kw_only=True)
class RerankDataset:
    """Queries, documents, first-stage candidates (in first-stage order) and judgments.

    Attributes:
        queries: query id → text.
        corpus: document id → text (``title + " " + text``, BEIR's convention).
        candidates: query id → the first stage's candidate ids, best first.
        qrels: query id → {document id: relevance grade}.
        first_stage_scores: query id → the first stage's scores, aligned with ``candidates``
            (empty when the source has only the order, as SciFact mini does).
    """

    queries: dict[str, str]
    corpus: dict[str, str]
    candidates: dict[str, list[str]]
    qrels: dict[str, dict[str, int]]
    first_stage_scores: dict[str, list[float]] = field(default_factory=dict)


def load_scifact_mini(*, bm25_only: bool = False) -> RerankDataset:
    """The SciFact mini set: 50 queries, their BM25 candidates, 883 abstracts.

    Args:
        bm25_only: False (default): each query's BM25 top-20 over the full corpus, in BM25 order,
            followed by any judged-relevant abstract BM25 missed (7 queries have one; 1,007
            pairs), so every query has a relevant candidate. Those extra abstracts come last:
            BM25 did not retrieve them, but a reranker can lift them, which flatters reranking
            compared with a real top-k. True: the BM25 top-20 only (1,000 pairs), with the BM25
            scores in ``first_stage_scores``: the honest first stage of a two-stage pipeline.

    Document text is ``title + " " + text`` (BEIR's convention); see ``scifact_mini/NOTICE.md``.
    """
    root = _HERE / "scifact_mini"
    if bm25_only:
        return load_beir(root, run="bm25_top20.tsv")
    ranked: dict[str, list[tuple[int, str]]] = {}
    for row in _tsv(root / "candidates.tsv"):
        rank = int(row["bm25-rank"])
        # rank 0 = added after BM25: sorts after every retrieved candidate.
        ranked.setdefault(row["query-id"], []).append((rank or 10**9, row["corpus-id"]))
    candidates = {q: [d for _, d in sorted(pairs)] for q, pairs in ranked.items()}
    return RerankDataset(
        queries=_queries(root / "queries.jsonl"),
        corpus=_corpus(root / "corpus.jsonl"),
        candidates=candidates,
        qrels=_qrels(root / "qrels" / "test.tsv"),
    )


def load_beir(
    root: str | os.PathLike[str],
    *,
    run: str = "runs/bm25_top100.tsv",
    split: str = "test",
    top_k: int | None = None,
) -> RerankDataset:
    """A BEIR folder plus a first-stage run, e.g. the full SciFact set with its BM25 top-100.

    Layout: ``corpus.jsonl`` (or ``.jsonl.gz``; ``_id``, ``title``, ``text``), ``queries.jsonl``,
    ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``) and the run, a TSV with
    ``query-id``, ``corpus-id``, ``rank`` and optionally ``score`` (read into
    ``first_stage_scores``). Only queries with judgments and a run are kept, and only the
    abstracts some candidate list needs.

    Args:
        root: the folder.
        run: the run file, relative to ``root`` (or absolute).
        split: which qrels file to read.
        top_k: keep each query's first ``top_k`` candidates (None: all in the run).

    Example:
        >>> data = load_beir("/data/scifact", top_k=100)  # doctest: +SKIP
        >>> len(data.candidates), sum(map(len, data.candidates.values()))  # doctest: +SKIP
        (300, 29945)
    """
    base = Path(root)
    qrels = _qrels(base / "qrels" / f"{split}.tsv")
    rows: dict[str, list[tuple[int, str, float | None]]] = {}
    for row in _tsv(base / run):
        if row["query-id"] in qrels:
            score = float(row["score"]) if row.get("score") not in (None, "") else None
            rows.setdefault(row["query-id"], []).append(
                (int(row["rank"]), row["corpus-id"], score)
            )
    candidates: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    for qid, hits in rows.items():
        hits = sorted(hits, key=lambda h: h[0])[:top_k]
        candidates[qid] = [d for _, d, _ in hits]
        if all(s is not None for _, _, s in hits):
            scores[qid] = [float(s) for _, _, s in hits if s is not None]
    needed = {d for ids in candidates.values() for d in ids}
    corpus_path = base / "corpus.jsonl"
    if not corpus_path.exists():
        corpus_path = base / "corpus.jsonl.gz"
    queries = _queries(base / "queries.jsonl")
    return RerankDataset(
        queries={q: queries[q] for q in candidates},
        corpus=_corpus(corpus_path, keep=needed),
        candidates=candidates,
        qrels={q: qrels[q] for q in candidates},
        first_stage_scores=scores if len(scores) == len(candidates) else {},
    )


# -- metrics -------------------------------------------------------------------------------------
def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gain (trec_eval / BEIR); the ideal list uses every judged document."""
    dcg = sum(
        relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k])
    )
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Share of the relevant documents (grade > 0) found in the first ``k`` of ``ranked``.

    The denominator is every relevant document, retrieved or not (BEIR / trec_eval's
    ``recall_k``), so a first stage that missed one caps what any reranker can reach.
    0.0 when the query has no relevant document.

    Example:
        >>> recall_at_k(["d3", "d1", "d7"], {"d1": 1, "d9": 1}, k=2)
        0.5
    """
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def mean_ndcg(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10
) -> float:
    """Mean nDCG@k over the judged queries of ``run``."""
    scores = [ndcg_at_k(run[q], qrels[q], k) for q in run if q in qrels]
    return sum(scores) / len(scores)


def mean_recall(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10
) -> float:
    """Mean recall@k over the judged queries of ``run``."""
    scores = [recall_at_k(run[q], qrels[q], k) for q in run if q in qrels]
    return sum(scores) / len(scores)


# -- readers -------------------------------------------------------------------------------------
def _lines(path: Path) -> Iterator[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from f
    else:
        with path.open(encoding="utf-8") as f:
            yield from f


def _tsv(path: Path) -> Iterator[dict[str, str]]:
    yield from csv.DictReader(_lines(path), delimiter="\t")


def _queries(path: Path) -> dict[str, str]:
    queries = {}
    for line in _lines(path):
        if line.strip():
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    return queries


def _corpus(path: Path, *, keep: set[str] | None = None) -> dict[str, str]:
    corpus = {}
    for line in _lines(path):
        if line.strip():
            row = json.loads(line)
            if keep is None or row["_id"] in keep:
                corpus[row["_id"]] = (row.get("title", "") + " " + row["text"]).strip()
    return corpus


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for row in _tsv(path):
        qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels
