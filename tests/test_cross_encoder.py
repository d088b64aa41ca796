"""Cross-encoder parity with sentence-transformers and plain transformers (1:1, 1:N, N:N)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from engine import Scorer, ScoreType
from tests.conftest import DOCUMENTS, QUERIES

TOL = 1e-5


def transformers_reference(path: Path, queries: list[str], documents: list[str]) -> torch.Tensor:
    """Logits [N, C] from a plain transformers forward, one pair at a time (no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    rows = []
    with torch.no_grad():
        for q, d in zip(queries, documents, strict=True):
            # A batch of one: HF treats a lone text_pair="" as "no pair", a batched "" as an empty
            # second segment ([CLS] q [SEP] [SEP]); we (and sentence-transformers) use the latter.
            enc = tok([q], [d], return_tensors="pt")
            rows.append(model(**enc).logits[0])
    return torch.stack(rows)


def st_predict(path: Path, queries: list[str], documents: list[str], **kwargs) -> list[float]:
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(path))
    return [float(x) for x in ce.predict(list(zip(queries, documents, strict=True)), **kwargs)]


SHAPES = {
    "1:1": (QUERIES[0], DOCUMENTS[0]),
    "1:N": (QUERIES[0], DOCUMENTS),
    "N:N": ([QUERIES[i % 2] for i in range(len(DOCUMENTS))], DOCUMENTS),
}


def _expand(queries, documents):
    docs = [documents] if isinstance(documents, str) else list(documents)
    qs = [queries] * len(docs) if isinstance(queries, str) else list(queries)
    return qs, docs


@pytest.mark.parametrize("family", ["bert_ce", "roberta_ce", "xlmr_ce"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_parity_with_transformers(family: str, shape: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(family)
    queries, documents = SHAPES[shape]
    scorer = Scorer.load(path)
    assert scorer.score_type is ScoreType.CROSS_ENCODER
    qs, docs = _expand(queries, documents)
    logits = transformers_reference(path, qs, docs)[:, 0]
    raw = [r.score for r in scorer.score(queries, documents, use_activation=False)]
    act = [r.score for r in scorer.score(queries, documents)]
    assert torch.allclose(torch.tensor(raw), logits, atol=TOL, rtol=0)
    assert torch.allclose(torch.tensor(act), torch.sigmoid(logits), atol=TOL, rtol=0)
    # The scores must actually differ, or parity would prove little.
    if len(docs) > 2:
        assert torch.tensor(raw).std() > 0.1


@pytest.mark.parametrize("family", ["bert_ce", "roberta_ce", "xlmr_ce"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_parity_with_sentence_transformers(
    family: str, shape: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(family)
    queries, documents = SHAPES[shape]
    qs, docs = _expand(queries, documents)
    scorer = Scorer.load(path)
    ours = [r.score for r in scorer.score(queries, documents)]
    theirs = st_predict(path, qs, docs)
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= TOL
    from torch.nn import Identity

    raw_theirs = st_predict(path, qs, docs, activation_fn=Identity())
    raw_ours = [r.score for r in scorer.score(queries, documents, use_activation=False)]
    # Raw logits are unbounded: float32 carries ~7 significant digits, so the bound scales with
    # the logit's size (a logit of 12 has an ulp near 1e-6; two summation orders differ by a few).
    assert all(
        abs(a - b) <= TOL * max(1.0, abs(b)) for a, b in zip(raw_ours, raw_theirs, strict=True)
    )


def test_two_label_model_scores_probability_of_second_label(bert_ce_2labels: Path) -> None:
    scorer = Scorer.load(bert_ce_2labels)
    logits = transformers_reference(bert_ce_2labels, [QUERIES[0]] * len(DOCUMENTS), DOCUMENTS)
    expected = torch.softmax(logits, dim=-1)[:, 1]
    got = torch.tensor([r.score for r in scorer.score(QUERIES[0], DOCUMENTS)])
    assert torch.allclose(got, expected, atol=TOL, rtol=0)
    raw = torch.tensor([r.score for r in scorer.score(QUERIES[0], DOCUMENTS, use_activation=False)])
    assert torch.allclose(raw, logits[:, 1] - logits[:, 0], atol=TOL, rtol=0)


def test_st_activation_identity_is_honoured(bert_ce: Path, tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "identity"
    shutil.copytree(bert_ce, folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"model_type": "CrossEncoder", "activation_fn": "torch.nn.modules.linear.Identity"}))
    logits = transformers_reference(bert_ce, [QUERIES[0]] * 3, DOCUMENTS[:3])[:, 0]
    got = torch.tensor([r.score for r in Scorer.load(folder).score(QUERIES[0], DOCUMENTS[:3])])
    assert torch.allclose(got, logits, atol=TOL, rtol=0)


def test_shuffle_score_unshuffle_equals_unbatched(bert_ce: Path) -> None:
    docs = [f"{d} {i}" for i, d in enumerate(DOCUMENTS * 6)]
    one_by_one = [Scorer.load(bert_ce).score(QUERIES[0], d)[0].score for d in docs]
    order = list(range(len(docs)))
    random.Random(0).shuffle(order)
    shuffled = Scorer.load(bert_ce, batch_size=7).score(QUERIES[0], [docs[i] for i in order])
    unshuffled = [0.0] * len(docs)
    for pos, i in enumerate(order):
        assert shuffled[pos].index == pos
        unshuffled[i] = shuffled[pos].score
    assert max(abs(a - b) for a, b in zip(one_by_one, unshuffled, strict=True)) <= TOL


def test_batch_size_one_equals_sixty_four(bert_ce: Path) -> None:
    docs = DOCUMENTS * 5
    a = [r.score for r in Scorer.load(bert_ce, batch_size=1).score(QUERIES[1], docs)]
    b = [r.score for r in Scorer.load(bert_ce, batch_size=64).score(QUERIES[1], docs)]
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= TOL


def test_token_budget_splits_batches_without_changing_scores(bert_ce: Path) -> None:
    docs = DOCUMENTS * 3
    a = [r.score for r in Scorer.load(bert_ce, max_tokens_per_batch=40).score(QUERIES[0], docs)]
    b = [r.score for r in Scorer.load(bert_ce).score(QUERIES[0], docs)]
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= TOL


def test_num_tokens_is_the_pair_prompt_length(bert_ce: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_ce))
    results = Scorer.load(bert_ce).score(QUERIES[0], DOCUMENTS)
    for r, d in zip(results, DOCUMENTS, strict=True):
        assert r.num_tokens == len(tok([QUERIES[0]], [d])["input_ids"][0])
