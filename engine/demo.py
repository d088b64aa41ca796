"""``make demo``: rerank SciFact mini's BM25 candidates with the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import logging
import time

from .datasets import load_scifact_mini, mean_ndcg
from .scorer import Scorer


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # truncation is counted below instead, per run
    data = load_scifact_mini()
    n_pairs = sum(len(c) for c in data.candidates.values())
    print(f"SciFact mini: {len(data.candidates)} queries, {n_pairs} BM25 candidates, "
          f"{len(data.corpus)} abstracts (CC BY 4.0 / ODC-By 1.0, see engine/datasets).")
    scorer = Scorer.load()
    print(f"Model: {scorer!r}")
    start = time.perf_counter()
    run: dict[str, list[str]] = {}
    truncated = 0
    for qid, candidates in data.candidates.items():
        ranked = scorer.rerank(data.queries[qid], [data.corpus[d] for d in candidates])
        run[qid] = [candidates[r.index] for r in ranked]
        truncated += sum(r.truncated for r in ranked)
    seconds = time.perf_counter() - start
    print(f"Reranked {n_pairs} pairs in {seconds:.1f}s ({n_pairs / seconds:.0f} pairs/s); "
          f"{truncated} documents were cut to {scorer.max_length} tokens.")
    print()
    print(f"nDCG@10  BM25 order: {mean_ndcg(data.candidates, data.qrels):.4f}")
    print(f"nDCG@10  reranked:   {mean_ndcg(run, data.qrels):.4f}")
    qid = next(iter(data.candidates))
    print()
    print(f"Query {qid}: {data.queries[qid]}")
    candidates = data.candidates[qid]
    for pos, r in enumerate(
        scorer.rerank(data.queries[qid], [data.corpus[d] for d in candidates], top_n=5), start=1
    ):
        doc_id = candidates[r.index]
        mark = "relevant" if data.qrels.get(qid, {}).get(doc_id) else ""
        text = " ".join(r.document.split())[:80]
        print(f"  {pos}. {r.score:.4f}  doc {doc_id:>9} (BM25 #{r.index + 1}) {mark:8}  {text}…")


if __name__ == "__main__":
    main()
