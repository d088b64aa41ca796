"""Small evaluation data shipped with the package (SciFact mini) and nDCG@k.

See ``scifact_mini/NOTICE.md`` for the data's origin and licences (CC BY 4.0 / ODC-By 1.0).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RerankDataset", "load_scifact_mini", "mean_ndcg", "ndcg_at_k"]

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, kw_only=True)
class RerankDataset:
    """Queries, documents, first-stage candidates (in their original order) and judgments."""

    queries: dict[str, str]
    corpus: dict[str, str]
    candidates: dict[str, list[str]]
    qrels: dict[str, dict[str, int]]


def load_scifact_mini() -> RerankDataset:
    """The SciFact mini set: 50 queries, their BM25 candidates (1,007 pairs), 883 abstracts.

    Document text is ``title + " " + text`` (BEIR's convention).
    """
    root = _HERE / "scifact_mini"
    queries = {}
    for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    corpus = {}
    for line in (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = (row.get("title", "") + " " + row["text"]).strip()
    ranked: dict[str, list[tuple[int, str]]] = {}
    with (root / "candidates.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            ranked.setdefault(row["query-id"], []).append((int(row["bm25-rank"]), row["corpus-id"]))
    candidates = {q: [d for _, d in sorted(pairs)] for q, pairs in ranked.items()}
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return RerankDataset(queries=queries, corpus=corpus, candidates=candidates, qrels=qrels)


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gain (trec_eval / BEIR); the ideal list uses every judged document."""
    dcg = sum(
        relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k])
    )
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mean_ndcg(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10
) -> float:
    """Mean nDCG@k over the judged queries of ``run``."""
    scores = [ndcg_at_k(run[q], qrels[q], k) for q in run if q in qrels]
    return sum(scores) / len(scores)
