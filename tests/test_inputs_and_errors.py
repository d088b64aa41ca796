"""Pairing rules, bad input, truncation flags and the error tree, on a tiny cross-encoder."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from engine import (
    InputError,
    InputTooLongError,
    ModelLoadError,
    PairingError,
    Scorer,
    ScorerConfig,
    ScoreType,
    ScoreTypeDetectionError,
    UnsupportedScoreType,
)
from engine.pairing import PAIRING_MESSAGE, pair_indices
from engine.ranking import rank
from engine.types import ScoreResult
from tests.conftest import DOCUMENTS, QUERIES


@pytest.fixture(scope="module")
def ce(bert_ce: Path) -> Scorer:
    return Scorer.load(bert_ce, max_length=32)


# -- pairing (pure) ------------------------------------------------------------------------------
def test_pairing_rule() -> None:
    assert pair_indices(1, 1) == [0]
    assert pair_indices(1, 3) == [0, 0, 0]
    assert pair_indices(3, 3) == [0, 1, 2]
    with pytest.raises(PairingError, match=PAIRING_MESSAGE):
        pair_indices(2, 3)
    with pytest.raises(PairingError, match=PAIRING_MESSAGE):
        pair_indices(3, 1)  # N:1 is not broadcast (vLLM)


def test_pairing_errors_through_score(ce: Scorer) -> None:
    with pytest.raises(PairingError, match="Input lengths must be either 1:1, 1:N or N:N"):
        ce.score(["a", "b"], ["x", "y", "z"])
    with pytest.raises(InputError, match="At least one text element"):
        ce.score([], ["x"])
    with pytest.raises(InputError, match="At least one text_pair element"):
        ce.score("q", [])
    assert [r.index for r in ce.score("q", ["a", "b", "c"])] == [0, 1, 2]


@pytest.mark.parametrize(
    ("docs", "needle"),
    [(["ok", None], r"documents\[1\] is NoneType"), (["ok", 3], r"documents\[1\] is int"),
     (None, "documents is None"), (b"bytes", "bytes")],
)
def test_non_string_items_name_their_index(ce: Scorer, docs: object, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        ce.score("q", docs)  # type: ignore[arg-type]


def test_bad_query_for_rerank(ce: Scorer) -> None:
    with pytest.raises(InputError, match="one query string"):
        ce.rerank(["q1", "q2"], ["a"])  # type: ignore[arg-type]


def test_empty_strings_are_scored(ce: Scorer) -> None:
    results = ce.score("", ["", "text"])
    assert all(isinstance(r.score, float) and 0 < r.score < 1 for r in results)


# -- ranking (pure) ------------------------------------------------------------------------------
def test_rank_sorts_stably_and_cuts() -> None:
    results = [ScoreResult(index=i, score=s) for i, s in enumerate([0.5, 0.9, 0.5, 0.1])]
    docs = ["a", "b", "c", "d"]
    ranked = rank(results, docs)
    assert [r.index for r in ranked] == [1, 0, 2, 3]  # tie 0/2 keeps input order
    assert [r.document for r in ranked] == ["b", "a", "c", "d"]
    assert [r.index for r in rank(results, docs, top_n=2)] == [1, 0]
    assert len(rank(results, docs, top_n=0)) == 4  # vLLM: 0 means all
    assert len(rank(results, docs, top_n=10)) == 4
    with pytest.raises(InputError, match="top_n"):
        rank(results, docs, top_n=-1)


def test_rerank_matches_score(ce: Scorer) -> None:
    docs = ["paris is in france", "berlin", "", "scurvy and vitamin c", "paris is in france"]
    scores = [r.score for r in ce.score("capital of france", docs)]
    ranked = ce.rerank("capital of france", docs, top_n=3)
    assert len(ranked) == 3
    assert [r.score for r in ranked] == sorted(scores, reverse=True)[:3]
    assert all(docs[r.index] == r.document for r in ranked)
    # Identical documents get identical scores and keep input order.
    full = ce.rerank("capital of france", docs)
    pos = [r.index for r in full]
    assert pos.index(0) < pos.index(4)


# -- truncation ----------------------------------------------------------------------------------
LONG = "the quick brown fox jumps over the lazy dog " * 10


def test_default_truncation_cuts_the_document_and_flags_it(
    ce: Scorer, bert_ce: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with caplog.at_level(logging.WARNING, logger="engine"):
        results = ce.score("capital of france", [LONG, "short", LONG], use_activation=False)
    assert [r.truncated for r in results] == [True, False, True]
    assert [r.num_tokens for r in results][0] == 32
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3" in warnings[0].getMessage()
    # The query survives whole: only_second truncation, as the reference computes it.
    tok = AutoTokenizer.from_pretrained(str(bert_ce))
    model = AutoModelForSequenceClassification.from_pretrained(str(bert_ce)).eval()
    enc = tok(["capital of france"], [LONG], truncation="only_second", max_length=32,
              return_tensors="pt")
    with torch.no_grad():
        expected = float(model(**enc).logits[0, 0])
    assert abs(results[0].score - expected) < 1e-5


def test_truncate_prompt_tokens_behaves_as_vllm(ce: Scorer) -> None:
    results = ce.score("capital of france", ["short", LONG], truncate_prompt_tokens=10)
    assert [r.num_tokens for r in results] == [7, 10]  # [CLS] capital of france [SEP] short [SEP]
    assert [r.truncated for r in results] == [False, True]
    assert ce.score("q", LONG, truncate_prompt_tokens=-1)[0].num_tokens == ce.max_length
    with pytest.raises(InputError, match="greater than max_model_len"):
        ce.score("q", "d", truncate_prompt_tokens=ce.max_length + 1)
    with pytest.raises(InputError, match="truncate_prompt_tokens"):
        ce.score("q", "d", truncate_prompt_tokens=0)


def test_overflow_error_names_the_pair(bert_ce: Path) -> None:
    strict = Scorer.load(bert_ce, max_length=32, overflow="error")
    with pytest.raises(InputTooLongError, match="pair 1 is"):
        strict.score("q", ["short", LONG])
    assert len(strict.score("q", ["short"])) == 1


def test_query_longer_than_limit_is_cut_too(ce: Scorer) -> None:
    (result,) = ce.score(LONG, "doc")
    assert result.truncated and result.num_tokens == 32


# -- loading -------------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Scorer.load(str(tmp_path / "nope"))


def test_uncached_hub_id_is_not_downloaded() -> None:
    with pytest.raises(ModelLoadError, match="never downloads"):
        Scorer.load("some-org/not-a-cached-model")


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="no config.json"):
        Scorer.load(tmp_path)


def test_config_without_weights(tmp_path: Path, bert_ce: Path) -> None:
    shutil.copy(bert_ce / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match="no weights"):
        Scorer.load(tmp_path)


def test_corrupt_weights_name_the_file(tmp_path: Path, bert_ce: Path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(bert_ce, folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        Scorer.load(folder)


def test_corrupt_json(tmp_path: Path, bert_ce: Path) -> None:
    folder = tmp_path / "badjson"
    shutil.copytree(bert_ce, folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json is not valid JSON"):
        Scorer.load(folder)


def test_detection_failure_lists_options(bert_encoder: Path) -> None:
    with pytest.raises(ScoreTypeDetectionError) as info:
        Scorer.load(bert_encoder)
    message = str(info.value)
    for option in ("cross-encoder", "late-interaction", "bi-encoder", "score_type="):
        assert option in message


def test_detection_reads_files_not_names(tmp_path: Path, bert_encoder: Path) -> None:
    # A folder called like a cross-encoder is still just an encoder.
    folder = tmp_path / "ms-marco-cross-encoder-colbert-reranker"
    shutil.copytree(bert_encoder, folder)
    with pytest.raises(ScoreTypeDetectionError):
        Scorer.load(folder)


def test_encoder_cannot_be_a_cross_encoder(bert_encoder: Path) -> None:
    with pytest.raises(UnsupportedScoreType, match="no classification head"):
        Scorer.load(bert_encoder, score_type="cross-encoder")


def test_unknown_score_type_lists_options(bert_ce: Path) -> None:
    with pytest.raises(UnsupportedScoreType, match="'cross-encoder', 'late-interaction'"):
        Scorer.load(bert_ce, score_type="colbert")


def test_cross_encoder_forced_to_other_types(bert_ce: Path) -> None:
    # Any encoder can be forced to late-interaction or bi-encoder (its head is ignored).
    assert Scorer.load(bert_ce, score_type="late_interaction").score_type is (
        ScoreType.LATE_INTERACTION)
    assert Scorer.load(bert_ce, score_type="bi-encoder").score("q", "d")[0].score <= 1.0


def test_config_is_frozen_keyword_only_and_validated() -> None:
    config = ScorerConfig(batch_size=4)
    with pytest.raises(AttributeError):
        config.batch_size = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        ScorerConfig(None)  # type: ignore[misc]
    with pytest.raises(InputError, match="batch_size"):
        ScorerConfig(batch_size=0)
    with pytest.raises(InputError, match="overflow"):
        ScorerConfig(overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="Unknown option"):
        Scorer.load(None, batchsize=3)


def test_max_length_above_positions_is_refused(bert_ce: Path) -> None:
    with pytest.raises(InputError, match="max_length=100000"):
        Scorer.load(bert_ce, max_length=100000)


def test_same_model_reuses_weights(bert_ce: Path) -> None:
    a = Scorer.load(bert_ce, batch_size=4)
    b = Scorer.load(bert_ce, batch_size=8)
    assert a._backend.model is b._backend.model
    assert Scorer.load(bert_ce, dtype="bfloat16")._backend.model is not a._backend.model


def test_trust_remote_code_is_off_by_default() -> None:
    assert ScorerConfig().trust_remote_code is False


def test_device_and_dtype_resolution() -> None:
    from engine.local.devices import resolve_device, resolve_dtype

    device = resolve_device("auto")
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ModelLoadError, match="dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    with pytest.raises(ModelLoadError, match="device"):
        resolve_device("toaster")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx512f", "avx512_bf16"}, torch.bfloat16), ({"amx_bf16", "amx_tile"}, torch.bfloat16),
     ({"avx512f", "avx2"}, torch.float32), (set(), torch.float32)],
)
def test_fast_dtype_is_bfloat16_only_on_cpus_with_a_bfloat16_unit(
    flags: set[str], expected: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.local.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(flags))
    assert devices.resolve_dtype("fast", torch.device("cpu")) is expected
    assert devices.resolve_dtype("auto", torch.device("cpu")) is torch.float32  # exact stays


def test_fast_dtype_loads_and_scores_close_to_float32(bert_ce: Path) -> None:
    from engine.local.devices import resolve_dtype

    fast = Scorer.load(bert_ce, dtype="fast")
    want = resolve_dtype("fast", torch.device("cpu"))
    assert next(fast._backend.model.parameters()).dtype is want
    exact = Scorer.load(bert_ce)
    got = [r.score for r in fast.score(QUERIES[0], DOCUMENTS)]
    ref = [r.score for r in exact.score(QUERIES[0], DOCUMENTS)]
    assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= (
        1e-6 if want is torch.float32 else 2e-2
    )


async def test_async_equals_sync(ce: Scorer) -> None:
    import asyncio

    docs = ["paris", "berlin", "vitamin c"]
    sync = ce.score("capital", docs)
    results = await asyncio.gather(*(ce.ascore("capital", docs) for _ in range(8)))
    assert all(r == sync for r in results)
    assert await ce.arerank("capital", docs) == ce.rerank("capital", docs)
