"""Late interaction: each projection format vs its reference, MaxSim vs a written-out loop."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import torch

from engine import Scorer, ScoreType, ScoreTypeDetectionError
from engine.datasets import load_scifact_mini, mean_ndcg
from engine.local.similarity import maxsim
from tests.conftest import DOCUMENTS, QUERIES

TOL = 1e-4  # MaxSim sums up to ~30 dot products of unit vectors


def maxsim_loop(q: torch.Tensor, d: torch.Tensor) -> float:
    """Σ_i max_j q_i·d_j, written out."""
    total = 0.0
    for i in range(q.shape[0]):
        best = -float("inf")
        for j in range(d.shape[0]):
            best = max(best, float(torch.dot(q[i], d[j])))
        total += best
    return total


def test_batched_maxsim_equals_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    qs = [torch.randn(n, 8, generator=gen) for n in (3, 5, 1)]
    ds = [torch.randn(n, 8, generator=gen) for n in (7, 2, 4)]
    q = torch.zeros(3, 5, 8)
    d = torch.zeros(3, 7, 8)
    qm = torch.zeros(3, 5, dtype=torch.long)
    dm = torch.zeros(3, 7, dtype=torch.long)
    for b in range(3):
        q[b, : len(qs[b])] = qs[b]
        qm[b, : len(qs[b])] = 1
        d[b, : len(ds[b])] = ds[b]
        dm[b, : len(ds[b])] = 1
    got = maxsim(q, d, qm, dm)
    for b in range(3):
        assert abs(float(got[b]) - maxsim_loop(qs[b], ds[b])) < 1e-5


def _reference_vectors(
    path: Path, text: str, projection: torch.nn.Module | None, *, drop_bos: bool = False,
    normalize: bool = True,
) -> torch.Tensor:
    """vLLM's test recipe: encoder(tokenizer(text)).last_hidden_state → projection → L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        h = model(**tok(text, return_tensors="pt")).last_hidden_state[0]  # [L, H]
        if projection is not None:
            h = projection(h)
    if drop_bos:
        h = h[1:]
    return torch.nn.functional.normalize(h, dim=-1) if normalize else h


def _linear_from(weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight.data.copy_(weight)
    if bias is not None:
        layer.bias.data.copy_(bias)
    return layer


def _projection(fmt: str, path: Path) -> torch.nn.Module | None:
    from safetensors.torch import load_file

    if fmt == "colbert_ir":
        return _linear_from(load_file(str(path / "model.safetensors"))["linear.weight"])
    if fmt == "pylate":
        return _linear_from(load_file(str(path / "1_Dense" / "model.safetensors"))["linear.weight"])
    if fmt == "bge_m3":
        state = torch.load(path / "colbert_linear.pt", weights_only=True)
        return _linear_from(state["weight"], state["bias"])
    return None


@pytest.mark.parametrize("fmt", ["colbert_ir", "pylate", "bge_m3", "bert_encoder"])
@pytest.mark.parametrize("shape", ["1:1", "1:N", "N:N"])
def test_each_projection_format_matches_reference(
    fmt: str, shape: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(fmt)
    forced = fmt in ("bge_m3", "bert_encoder")  # BGE-M3 is ambiguous; a plain encoder is forced
    scorer = Scorer.load(path, score_type="late-interaction" if forced else None)
    assert scorer.score_type is ScoreType.LATE_INTERACTION
    projection = _projection(fmt, path)
    drop_bos = fmt == "bge_m3"
    if shape == "1:1":
        queries, documents, qs = QUERIES[0], [DOCUMENTS[0]], [QUERIES[0]]
    elif shape == "1:N":
        queries, documents, qs = QUERIES[0], DOCUMENTS, [QUERIES[0]] * len(DOCUMENTS)
    else:
        qs = [QUERIES[i % 2] for i in range(len(DOCUMENTS))]
        queries, documents = qs, DOCUMENTS
    got = [r.score for r in scorer.score(queries, documents)]
    for k, (q, d) in enumerate(zip(qs, documents, strict=True)):
        ref = maxsim_loop(
            _reference_vectors(path, q, projection, drop_bos=drop_bos),
            _reference_vectors(path, d, projection, drop_bos=drop_bos),
        )
        assert abs(got[k] - ref) < TOL, (k, got[k], ref)


def test_use_activation_false_skips_token_normalisation(colbert_ir: Path) -> None:
    projection = _projection("colbert_ir", colbert_ir)
    got = Scorer.load(colbert_ir).score(QUERIES[0], DOCUMENTS[:2], use_activation=False)
    for r, d in zip(got, DOCUMENTS[:2], strict=True):
        ref = maxsim_loop(
            _reference_vectors(colbert_ir, QUERIES[0], projection, normalize=False),
            _reference_vectors(colbert_ir, d, projection, normalize=False),
        )
        assert abs(r.score - ref) < 1e-3 * max(1.0, abs(ref))


def test_bge_m3_layout_is_ambiguous_until_told(bge_m3: Path) -> None:
    with pytest.raises(ScoreTypeDetectionError, match="late-interaction") as info:
        Scorer.load(bge_m3)
    assert "bi-encoder" in str(info.value)
    assert Scorer.load(bge_m3, score_type="bi-encoder").score_type is ScoreType.BI_ENCODER


def test_colbert_markers_match_written_reference(pylate: Path) -> None:
    """PyLate-style: [Q]/[D] after CLS, queries padded with [MASK] (not attended), doc punctuation
    left out of the MaxSim."""
    from transformers import AutoModel, AutoTokenizer

    scorer = Scorer.load(pylate, colbert_markers=True, query_length=16)
    tok = AutoTokenizer.from_pretrained(str(pylate))
    model = AutoModel.from_pretrained(str(pylate)).eval()
    projection = _projection("pylate", pylate)
    q_marker, d_marker = tok.convert_tokens_to_ids(["[Q] ", "[D] "])
    punct = {tok(c, add_special_tokens=False)["input_ids"][0] for c in string.punctuation}

    def vectors(ids: list[int], attention: list[int]) -> torch.Tensor:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([attention]),
                        token_type_ids=torch.zeros(1, len(ids), dtype=torch.long))
            projected = projection(out.last_hidden_state[0])
        return torch.nn.functional.normalize(projected, dim=-1)

    q_ids = tok(QUERIES[0])["input_ids"]
    q_ids = q_ids[:1] + [q_marker] + q_ids[1:]
    pad = 16 - len(q_ids)
    q_vec = vectors(q_ids + [tok.mask_token_id] * pad, [1] * len(q_ids) + [0] * pad)
    doc = "vitamin c, scurvy; sailors!"
    d_ids = tok(doc)["input_ids"]
    d_ids = d_ids[:1] + [d_marker] + d_ids[1:]
    d_vec = vectors(d_ids, [1] * len(d_ids))
    keep = [j for j, t in enumerate(d_ids) if t not in punct]
    expected = maxsim_loop(q_vec, d_vec[keep])
    got = scorer.score(QUERIES[0], doc)[0].score
    assert abs(got - expected) < TOL
    plain = Scorer.load(pylate).score(QUERIES[0], doc)[0].score
    assert abs(plain - got) > 1e-3  # the option really changes the computation


def test_shuffle_and_batch_size_do_not_change_scores(colbert_ir: Path) -> None:
    docs = [f"{d} {i}" for i, d in enumerate(DOCUMENTS * 5)]
    one = [Scorer.load(colbert_ir).score(QUERIES[1], d)[0].score for d in docs]
    order = list(range(len(docs)))
    random.Random(2).shuffle(order)
    shuffled = Scorer.load(colbert_ir, batch_size=4).score(QUERIES[1], [docs[i] for i in order])
    back = [0.0] * len(docs)
    for pos, i in enumerate(order):
        back[i] = shuffled[pos].score
    # Scores are sums of ~20 dot products, so float32 rounding is ~1e-6 relative.
    assert max(abs(a - b) for a, b in zip(one, back, strict=True)) <= TOL
    big = [r.score for r in Scorer.load(colbert_ir, batch_size=64).score(QUERIES[1], docs)]
    assert max(abs(a - b) for a, b in zip(one, big, strict=True)) <= TOL


def test_pylate_config_is_detected(pylate: Path) -> None:
    config = json.loads((pylate / "config_sentence_transformers.json").read_text())
    assert config["model_type"] == "ColBERT"
    assert Scorer.load(pylate).score_type is ScoreType.LATE_INTERACTION


# Pinned from a run of this code (MiniLM forced to late-interaction, no projection, vLLM maths);
# it moves only if the maths or the data change.
MINILM_LATE_INTERACTION_NDCG = 0.7827


@pytest.mark.slow
def test_minilm_late_interaction_scifact_mini() -> None:
    data = load_scifact_mini()
    scorer = Scorer.load(score_type="late-interaction")
    run = {}
    for qid, cands in data.candidates.items():
        ranked = scorer.rerank(data.queries[qid], [data.corpus[d] for d in cands])
        run[qid] = [cands[r.index] for r in ranked]
    assert abs(mean_ndcg(run, data.qrels) - MINILM_LATE_INTERACTION_NDCG) <= 0.002
