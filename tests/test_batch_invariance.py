"""Batch invariance in exact mode: a pair's score never depends on its batch company.

Every backend, float32: a pair scored alone, in calls of other sizes, at other positions, next to
copies of itself, in N:N calls with other queries, and across several batches of a call must get
the same float32 bits (not just close ones). The kernels underneath are checked too: the linear
layers' rows do not depend on how many rows come with them nor on where they sit, packed pooling
reduces each sequence over its own rows, MaxSim per pair equals a written-out loop.

Why it holds (engine/local/kernels.py, attention.py, packed.py, packed_decoder.py): every call
takes the padding-free forward; linear layers run through oneDNN with at least 8 rows; attention,
pooling and MaxSim see one sequence (or pair) at a time; no elementwise op whose vector and
scalar loops round differently (rsqrt, sigmoid, SiLU) touches packed rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import Scorer
from engine.local import kernels
from engine.local.pooling import pool, pool_packed
from engine.local.similarity import maxsim
from tests.conftest import DOCUMENTS, QUERIES
from tests.llm_models import build_causal_lm, build_nemotron

DOC = "sailors got scurvy from a lack of vitamin c"
COMPANY = [
    [],
    ["berlin"],
    ["a much longer passage about the history of paris and of france " * 6],
    [d or "x" for d in DOCUMENTS] * 3,
    [f"document number {i} " + "word " * (i % 9) for i in range(40)],
]
ENCODERS = ["bert_ce", "bert_ce_2labels", "roberta_ce", "xlmr_ce", "st_bi_encoder",
            "legacy_bi_encoder", "colbert_ir", "bge_m3", "qwen3_llm_reranker"]
DECODERS = ["qwen2", "gemma", "llama", "nemotron"]


@pytest.fixture(scope="module")
def decoder_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.llm_models import convert_to_seq_cls

    root = tmp_path_factory.mktemp("invariance_llms")
    out = {f: convert_to_seq_cls(build_causal_lm(root / f, f, seed=11 + i), root / f"{f}_cls",
                                 ["no", "yes"])
           for i, f in enumerate(["qwen2", "gemma", "llama"])}
    out["nemotron"] = build_nemotron(root / "nemotron")
    return out


def _path(name: str, request: pytest.FixtureRequest) -> Path:
    if name in DECODERS:
        return request.getfixturevalue("decoder_paths")[name]  # type: ignore[no-any-return]
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _check(scorer: Scorer) -> None:
    alone = scorer.score(QUERIES[1], DOC)[0].score
    for company in COMPANY:
        for at in {0, len(company) // 2, len(company)}:
            docs = [*company[:at], DOC, *company[at:]]
            got = scorer.score(QUERIES[1], docs)[at].score
            assert got == alone, (len(company), at, got, alone)
    # Copies of one document anywhere in one call score identically.
    docs = [DOC, *COMPANY[4][:13], DOC, *COMPANY[3], DOC]
    scores = [r.score for r in scorer.score(QUERIES[1], docs)]
    assert scores[0] == scores[14] == scores[-1] == alone
    # N:N with other queries: each pair as it scores alone.
    queries = [QUERIES[i % 2] + " " + "x" * (i % 3) for i in range(8)]
    docs = [COMPANY[4][i * 3] for i in range(8)]
    together = [r.score for r in scorer.score(queries, docs)]
    assert together == [scorer.score(q, d)[0].score for q, d in zip(queries, docs, strict=True)]


@pytest.mark.parametrize("name", [*ENCODERS, *DECODERS])
def test_scores_are_bit_identical_in_any_batch_company(
    name: str, request: pytest.FixtureRequest
) -> None:
    extra = {"score_type": "late-interaction"} if name == "bge_m3" else {}
    _check(Scorer.load(_path(name, request), dtype="float32", **extra))


def test_bge_m3_bi_encoder_is_batch_invariant(bge_m3: Path) -> None:
    _check(Scorer.load(bge_m3, score_type="bi-encoder", dtype="float32"))


@pytest.mark.parametrize("name", ["bert_ce", "st_bi_encoder", "colbert_ir", "qwen3_llm_reranker"])
def test_several_batches_per_call_change_nothing(name: str, request: pytest.FixtureRequest) -> None:
    _check(Scorer.load(_path(name, request), dtype="float32", batch_size=3))


def test_colbert_markers_queries_are_batch_invariant(pylate: Path) -> None:
    scorer = Scorer.load(pylate, colbert_markers=True, dtype="float32")
    _check(scorer)


# -- the kernels -------------------------------------------------------------------------------
@pytest.mark.skipif(not kernels.Linears(torch.device("cpu"), torch.float32).fused,
                    reason="no oneDNN in this torch build")
@pytest.mark.parametrize("act", ["none", "gelu", "tanh", "silu"])
@pytest.mark.parametrize(("k", "n"), [(384, 1152), (1536, 384), (32, 37), (384, 1)])
def test_linear_rows_do_not_depend_on_row_count_or_offset(act: str, k: int, n: int) -> None:
    torch.manual_seed(0)
    lin = kernels.Linears(torch.device("cpu"), torch.float32)
    x, w, b = torch.randn(700, k), torch.randn(n, k), torch.randn(n)
    ref = lin(x, w, b, act)  # [700, N]
    for start, rows in [(0, 1), (5, 1), (3, 2), (9, 7), (1, 64), (100, 513), (13, 600)]:
        assert torch.equal(lin(x[start : start + rows], w, b, act), ref[start : start + rows])
        residual = torch.randn(rows, n)
        assert torch.equal(lin.add(x[start : start + rows], w, b, residual),
                           lin.add(x, w, b, torch.cat([torch.zeros(start, n), residual,
                                                       torch.zeros(700 - start - rows, n)])
                                   )[start : start + rows])


def test_packed_pooling_matches_masked_pooling() -> None:
    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    packed = torch.randn(sum(lengths), 6, dtype=torch.float64)
    padded = torch.zeros(len(lengths), max(lengths), 6, dtype=torch.float64)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    at = 0
    for row, n in enumerate(lengths):
        padded[row, :n], mask[row, :n] = packed[at : at + n], 1
        at += n
    for mode in ("cls", "mean", "max", "lasttoken", "mean_sqrt_len_tokens"):
        assert torch.allclose(pool_packed(packed, lengths, mode), pool(padded, mask, mode),
                              atol=1e-12, rtol=0), mode
    alone = pool_packed(packed[5:6], [1], "mean")
    assert torch.equal(pool_packed(packed, lengths, "mean")[1:2], alone)


def test_maxsim_per_pair_matches_a_written_out_loop() -> None:
    torch.manual_seed(0)
    q, d = torch.randn(3, 4, 5), torch.randn(3, 6, 5)
    q_mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    d_mask = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]])
    want = []
    for b in range(3):
        total = 0.0
        for i in range(4):
            if q_mask[b, i]:
                total += max(float(q[b, i] @ d[b, j]) for j in range(6) if d_mask[b, j])
        want.append(total)
    assert maxsim(q, d, q_mask, d_mask).tolist() == pytest.approx(want, abs=1e-5)
    # A pair's value is the same whatever is padded around it.
    wide = torch.cat([d, torch.randn(3, 4, 5)], dim=1)
    wide_mask = torch.cat([d_mask, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    assert torch.equal(maxsim(q, wide, q_mask, wide_mask), maxsim(q, d, q_mask, d_mask))


def test_rsqrt_gives_a_value_the_same_bits_wherever_it_sits() -> None:
    from engine.local.packed_decoder import rsqrt

    x = torch.rand(50_000) + 0.1
    ref = rsqrt(x)
    for start, n in [(1, 1), (3, 37), (7, 100), (5, 9000), (11, 40_000)]:
        assert torch.equal(rsqrt(x[start : start + n]), ref[start : start + n])
