"""LLM rerankers: token-logit conversions, converted seq-cls heads and the bidirectional Llama.

Every score is checked against a reference computed here with plain transformers on a prompt
written out by hand (not rendered by our templates): a causal-LM forward reading z[t1] − z[t0]
or z[t] at the last position, an HF ``*ForSequenceClassification`` forward, or a bidirectional
eager forward. Tiny random Qwen2/Qwen3/Gemma/Llama models (hidden 32, 2 layers) get byte-level
BPE tokenizers built with ``tokenizers`` that hold the classifier tokens and the ChatML specials.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import InputError, InputTooLongError, ModelLoadError, Scorer, ScoreType, TemplateError
from engine.errors import UnsupportedScoreType
from engine.local.conversion import auto_template, resolve_conversion
from engine.local.llm_reranker import LLMRerankerBackend
from engine.local.pooling import last_token_index, pool
from engine.local.tokenizing import truncate_text_to_tokens
from tests.llm_models import (
    QWEN3_SUFFIX,
    basic_prompt,
    build_causal_lm,
    build_nemotron,
    convert_to_seq_cls,
    gemma_prompt,
    mxbai_prompt,
    nemotron_prompt,
    qwen3_prompt,
)

TOL = 1e-5
QUERY = "what is the capital of france?"
QUERIES = [QUERY, "vitamin c and scurvy"]
# Mixed lengths on purpose, so batches are padded.
DOCS = [
    "paris is the capital and largest city of france",
    "berlin",
    "sailors got scurvy from a lack of vitamin c, yes",
    "",
    "the quick brown fox jumps over the lazy dog " * 4,
    "bm25 is a ranking function",
]
@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm_rerankers")


@pytest.fixture(scope="module")
def causal_lms(llm_dir: Path) -> dict[str, Path]:
    # Qwen3 and Gemma tie the head to the embeddings (as the real ones); Qwen2 and Llama don't.
    return {
        "qwen3": build_causal_lm(llm_dir / "qwen3", "qwen3", seed=1, tie=True),
        "qwen2": build_causal_lm(llm_dir / "qwen2", "qwen2", seed=2, tie=False),
        "gemma": build_causal_lm(llm_dir / "gemma", "gemma", seed=3, tie=True),
        "llama": build_causal_lm(llm_dir / "llama", "llama", seed=4, tie=False),
    }


@pytest.fixture(scope="module")
def nemotron(llm_dir: Path) -> Path:
    return build_nemotron(llm_dir / "nemotron")


# -- references ---------------------------------------------------------------------------------
@functools.cache
def _reference_lm(path: Path) -> tuple[Any, Any]:
    """The plain transformers tokenizer and causal LM of a checkpoint (loaded once per path)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoTokenizer.from_pretrained(str(path)),
        AutoModelForCausalLM.from_pretrained(str(path)).eval(),
    )


def causal_reference(
    path: Path,
    prompts: list[str],
    tokens: list[str],
    method: str = "from_2_way_softmax",
    ids: list[list[int]] | None = None,
) -> list[float]:
    """Raw logits from a plain causal-LM forward over the whole vocabulary, one prompt at a time."""
    tok, lm = _reference_lm(path)
    t = tok.convert_tokens_to_ids(tokens)
    out = []
    with torch.no_grad():
        for k, prompt in enumerate(prompts):
            seq = ids[k] if ids is not None else tok(prompt)["input_ids"]
            z = lm(input_ids=torch.tensor([seq])).logits[0, -1]  # [V], last position
            out.append(
                float(z[t[1]] - z[t[0]]) if method == "from_2_way_softmax" else float(z[t[0]])
            )
    return out


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _pairs(queries: str | list[str], docs: list[str]) -> list[tuple[str, str]]:
    qs = [queries] * len(docs) if isinstance(queries, str) else queries
    return list(zip(qs, docs, strict=True))


def assert_close(got: list[float], want: list[float], tol: float = TOL) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g - w) <= tol, f"pair {i}: {g} vs reference {w}"


# (family, hf_overrides, template or None for auto, prompt builder, tokens, method)
CONVERSIONS: dict[
    str, tuple[str, dict[str, Any], str | None, Callable[[str, str], str], list[str], str]
] = {
    "qwen3-original": (
        "qwen3",
        {
            "architectures": ["Qwen3ForSequenceClassification"],
            "classifier_from_token": ["no", "yes"],
            "is_original_qwen3_reranker": True,
        },
        None,
        qwen3_prompt,
        ["no", "yes"],
        "from_2_way_softmax",
    ),
    "mxbai-qwen2": (
        "qwen2",
        {"classifier_from_token": ["0", "1"], "method": "from_2_way_softmax"},
        None,
        mxbai_prompt,
        ["0", "1"],
        "from_2_way_softmax",
    ),
    "bge-gemma": (
        "gemma",
        {"classifier_from_token": ["Yes"], "method": "no_post_processing"},
        None,
        gemma_prompt,
        ["Yes"],
        "no_post_processing",
    ),
    "llama-basic": (
        "llama",
        {"classifier_from_token": ["no", "yes"], "method": "from_2_way_softmax"},
        "basic",
        basic_prompt,
        ["no", "yes"],
        "from_2_way_softmax",
    ),
}
SHAPES: dict[str, tuple[str | list[str], list[str]]] = {
    "1:N": (QUERY, DOCS),
    "N:N": ([QUERIES[i % 2] for i in range(len(DOCS))], DOCS),
}


def _load_conversion(case: str, causal_lms: dict[str, Path], **options: Any) -> Scorer:
    family, overrides, template, *_ = CONVERSIONS[case]
    if template is not None:
        options.setdefault("template", template)
    return Scorer.load(causal_lms[family], hf_overrides=overrides, **options)


# -- conversions vs a causal-LM forward ---------------------------------------------------------
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("case", list(CONVERSIONS))
def test_conversion_matches_causal_lm_forward(
    case: str, shape: str, causal_lms: dict[str, Path]
) -> None:
    family, _, _, prompt, tokens, method = CONVERSIONS[case]
    scorer = _load_conversion(case, causal_lms)
    assert scorer.score_type is ScoreType.CROSS_ENCODER
    assert isinstance(scorer._backend, LLMRerankerBackend)
    queries, docs = SHAPES[shape]
    raw = causal_reference(
        causal_lms[family], [prompt(q, d) for q, d in _pairs(queries, docs)], tokens, method
    )
    got = [r.score for r in scorer.score(queries, docs)]
    assert_close(got, [sigmoid(z) for z in raw])
    got_raw = [r.score for r in scorer.score(queries, docs, use_activation=False)]
    assert_close(got_raw, raw)
    assert len({round(z, 4) for z in raw}) > 1, "random model gives one score for every pair"


@pytest.mark.parametrize("case", list(CONVERSIONS))
def test_mixed_length_batch_equals_one_by_one(case: str, causal_lms: dict[str, Path]) -> None:
    batched = _load_conversion(case, causal_lms, batch_size=32)
    single = _load_conversion(case, causal_lms, batch_size=1)
    together = batched.score(QUERY, DOCS)
    assert len({r.num_tokens for r in together}) > 2  # the batch really mixes lengths
    one_by_one = [single.score(QUERY, d)[0].score for d in DOCS]
    assert_close([r.score for r in together], one_by_one)
    assert_close(
        [r.score for r in batched.score(QUERY, list(reversed(DOCS)))], list(reversed(one_by_one))
    )


@pytest.mark.parametrize("case", list(CONVERSIONS))
def test_render_round_trip_is_what_the_model_reads(
    case: str, causal_lms: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokenizing the rendered prompt gives exactly the ids fed to the model."""
    family, _, _, prompt, *_ = CONVERSIONS[case]
    scorer = _load_conversion(case, causal_lms)
    backend = scorer._backend
    fed: list[list[int]] = []
    real_forward = backend.forward

    def recording_forward(ids: list[list[int]], *args: Any) -> torch.Tensor:
        fed.extend(ids)
        return real_forward(ids, *args)

    monkeypatch.setattr(backend, "forward", recording_forward)
    results = scorer.score(QUERY, DOCS)
    prep = backend.prepare([QUERY], DOCS, [0] * len(DOCS), None)
    for i, doc in enumerate(DOCS):
        rendered = prep.prompts[i]
        assert rendered == prompt(QUERY, doc)  # the template renders the model card's format
        ids = backend.tokenizer(rendered, add_special_tokens=True)["input_ids"]
        assert prep.input_ids[i] == ids
        assert results[i].num_tokens == len(ids)
    assert sorted(map(tuple, fed)) == sorted(tuple(s) for s in prep.input_ids)
    if family in ("gemma", "llama"):  # the tokenizer's BOS comes first, once
        assert all(s[0] == backend.tokenizer.bos_token_id for s in fed)
        assert all(s.count(backend.tokenizer.bos_token_id) == 1 for s in fed)


def test_instruction_reaches_the_prompt_and_the_score(causal_lms: dict[str, Path]) -> None:
    instruction = "Find passages about cities"
    scorer = _load_conversion("qwen3-original", causal_lms, instruction=instruction)
    raw = causal_reference(
        causal_lms["qwen3"], [qwen3_prompt(QUERY, d, instruction) for d in DOCS], ["no", "yes"]
    )
    assert_close([r.score for r in scorer.score(QUERY, DOCS, use_activation=False)], raw)
    # template_kwargs wins over instruction=, as vLLM's chat_template_kwargs does.
    both = _load_conversion(
        "qwen3-original",
        causal_lms,
        instruction="ignored",
        template_kwargs={"instruction": instruction},
    )
    assert_close([r.score for r in both.score(QUERY, DOCS, use_activation=False)], raw)


# -- already-converted *ForSequenceClassification ------------------------------------------------
SEQ_CLS = {
    "qwen3": (["no", "yes"], None, qwen3_prompt),  # None: the template is chosen from config
    "qwen2": (["0", "1"], "mxbai_rerank_v2", mxbai_prompt),
    "gemma": (["Yes"], "bge_reranker_v2_gemma", gemma_prompt),
    "llama": (["no", "yes"], "basic", basic_prompt),
}


@pytest.mark.parametrize("family", list(SEQ_CLS))
def test_converted_seq_cls_checkpoint(
    family: str, causal_lms: dict[str, Path], llm_dir: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokens, template, prompt = SEQ_CLS[family]
    path = llm_dir / f"{family}_seq_cls"
    if not path.exists():
        convert_to_seq_cls(causal_lms[family], path, tokens)
    scorer = Scorer.load(path, **({"template": template} if template else {}))
    assert isinstance(scorer._backend, LLMRerankerBackend)
    got = [r.score for r in scorer.score(QUERY, DOCS, use_activation=False)]
    # Reference 1: HF's own seq-cls forward, one unpadded prompt at a time.
    tok = AutoTokenizer.from_pretrained(str(path))
    hf = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    with torch.no_grad():
        want = [float(hf(**tok(prompt(QUERY, d), return_tensors="pt")).logits[0, 0]) for d in DOCS]
    assert_close(got, want)
    # Reference 2: the same number as the token conversion of the original causal LM.
    method = "from_2_way_softmax" if len(tokens) == 2 else "no_post_processing"
    assert_close(
        got, causal_reference(causal_lms[family], [prompt(QUERY, d) for d in DOCS], tokens, method)
    )
    assert_close([r.score for r in scorer.score(QUERY, DOCS)], [sigmoid(z) for z in want])


# -- the bidirectional Llama (nemotron) -----------------------------------------------------------
def bidirectional_reference(path: Path, prompts: list[str], *, causal: bool = False) -> list[float]:
    """transformers' eager Llama with config.is_causal=False and no mask (one unpadded prompt at a
    time, so nothing is masked at all), mean over tokens, then the ``score`` head."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    raw = json.loads((path / "config.json").read_text())
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "auto_map", "architectures")}
    config = LlamaConfig(**fields)
    config.is_causal = causal
    model = LlamaForSequenceClassification.from_pretrained(
        str(path), config=config, attn_implementation="eager"
    ).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    out = []
    with torch.no_grad():
        for prompt in prompts:
            hidden = model.model(
                input_ids=tok(prompt, return_tensors="pt")["input_ids"]
            ).last_hidden_state
            out.append(float(model.score(hidden[0].mean(dim=0))[0]))
    return out


def test_nemotron_bidirectional_matches_reference(
    nemotron: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="engine"):
        scorer = Scorer.load(nemotron)
    assert "nemotron_rerank" in caplog.text
    backend = scorer._backend
    assert isinstance(backend, LLMRerankerBackend)
    assert not backend.spec.causal and backend.spec.pooling == "mean"
    prompts = [nemotron_prompt(QUERY, d) for d in DOCS]
    want = bidirectional_reference(nemotron, prompts)
    got = [r.score for r in scorer.score(QUERY, DOCS, use_activation=False)]
    assert_close(got, want)  # a padded, mixed-length batch
    single = Scorer.load(nemotron, batch_size=1)
    assert_close([single.score(QUERY, d, use_activation=False)[0].score for d in DOCS], want)
    # The test can fail: a causal mask gives different numbers.
    causal = bidirectional_reference(nemotron, prompts, causal=True)
    assert max(abs(a - b) for a, b in zip(causal, want, strict=True)) > 1e-3


def test_nemotron_needs_no_remote_code(nemotron: Path) -> None:
    scorer = Scorer.load(nemotron, trust_remote_code=False)
    assert scorer.score(QUERY, "paris")[0].score == pytest.approx(
        sigmoid(bidirectional_reference(nemotron, [nemotron_prompt(QUERY, "paris")])[0]), abs=TOL
    )


# -- template selection -------------------------------------------------------------------------
def test_family_template_is_chosen_from_config_not_name(
    causal_lms: dict[str, Path], llm_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A Qwen3 checkpoint in a folder named like the Gemma reranker still gets the Qwen3 template.
    misleading = llm_dir / "bge-reranker-v2-gemma"
    if not misleading.exists():
        shutil.copytree(causal_lms["qwen3"], misleading)
    _, overrides, *_ = CONVERSIONS["qwen3-original"]
    with caplog.at_level(logging.INFO, logger="engine"):
        scorer = Scorer.load(misleading, hf_overrides=overrides)
        scorer.score(QUERY, DOCS)
        scorer.score(QUERY, DOCS)
    chosen = [r for r in caplog.records if "Score template" in r.getMessage()]
    assert len(chosen) == 1  # said once, at load
    assert "qwen3_reranker" in chosen[0].getMessage()
    assert scorer._backend.template.name == "qwen3_reranker"


def test_explicit_template_wins(causal_lms: dict[str, Path]) -> None:
    scorer = _load_conversion("qwen3-original", causal_lms, template="basic")
    raw = causal_reference(
        causal_lms["qwen3"], [basic_prompt(QUERY, d) for d in DOCS], ["no", "yes"]
    )
    assert_close([r.score for r in scorer.score(QUERY, DOCS, use_activation=False)], raw)


def test_template_from_a_file(causal_lms: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "mine.jinja"
    path.write_text(
        '{{ (messages | selectattr("role", "eq", "document") | first).content }} ? '
        '{{ (messages | selectattr("role", "eq", "query") | first).content }}'
    )
    scorer = _load_conversion("llama-basic", causal_lms, template=str(path))
    raw = causal_reference(causal_lms["llama"], [f"{d} ? {QUERY}" for d in DOCS], ["no", "yes"])
    assert_close([r.score for r in scorer.score(QUERY, DOCS, use_activation=False)], raw)


def test_without_template_vllm_concatenates_and_warns(
    causal_lms: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine"):
        scorer = Scorer.load(causal_lms["llama"], hf_overrides=CONVERSIONS["llama-basic"][1])
    assert "No score template" in caplog.text and "basic" in caplog.text
    docs = [d for d in DOCS if d]
    raw = causal_reference(causal_lms["llama"], [QUERY + d for d in docs], ["no", "yes"])
    assert_close([r.score for r in scorer.score(QUERY, docs, use_activation=False)], raw)


def test_auto_template_table() -> None:
    def pick(config: dict[str, Any]) -> str | None:
        found = auto_template(config, resolve_conversion(config))
        return found[0] if found else None

    assert (
        pick(
            {
                "model_type": "qwen3",
                "architectures": ["Qwen3ForSequenceClassification"],
                "classifier_from_token": ["no", "yes"],
                "is_original_qwen3_reranker": True,
            }
        )
        == "qwen3_reranker"
    )
    assert (
        pick(
            {
                "model_type": "qwen3_vl",
                "architectures": ["Qwen3VLForSequenceClassification"],
                "classifier_from_token": ["no", "yes"],
                "is_original_qwen3_reranker": True,
            }
        )
        == "qwen3_vl_reranker"
    )
    assert (
        pick(
            {
                "model_type": "gemma",
                "classifier_from_token": ["Yes"],
                "method": "no_post_processing",
            }
        )
        == "bge_reranker_v2_gemma"
    )
    assert (
        pick(
            {
                "model_type": "qwen2",
                "classifier_from_token": ["0", "1"],
                "method": "from_2_way_softmax",
            }
        )
        == "mxbai_rerank_v2"
    )
    assert (
        pick(
            {
                "model_type": "llama_bidirec",
                "architectures": ["LlamaBidirectionalForSequenceClassification"],
            }
        )
        == "nemotron_rerank"
    )
    # Unknown combinations get no guess.
    assert (
        pick(
            {
                "model_type": "llama",
                "classifier_from_token": ["no", "yes"],
                "method": "from_2_way_softmax",
            }
        )
        is None
    )
    assert (
        pick({"model_type": "qwen2", "architectures": ["Qwen2ForSequenceClassification"]}) is None
    )
    # The name never matters: "_name_or_path" is ignored.
    assert pick({"model_type": "llama", "_name_or_path": "Qwen/Qwen3-Reranker-0.6B"}) is None


# -- truncation ----------------------------------------------------------------------------------
def test_truncate_prompt_tokens_cuts_the_rendered_prompt(
    causal_lms: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    scorer = _load_conversion("qwen3-original", causal_lms)
    tok = scorer._backend.tokenizer
    n = 40
    full = [tok(qwen3_prompt(QUERY, d))["input_ids"] for d in DOCS]
    assert all(len(s) > n for s in full)
    with caplog.at_level(logging.WARNING, logger="engine"):
        results = scorer.score(QUERY, DOCS, truncate_prompt_tokens=n, use_activation=False)
    assert "max_tokens_per_doc" in caplog.text  # vLLM's advice: the suffix is gone
    assert all(r.truncated and r.num_tokens == n for r in results)
    raw = causal_reference(
        causal_lms["qwen3"], [""] * len(DOCS), ["no", "yes"], ids=[s[:n] for s in full]
    )
    assert_close([r.score for r in results], raw)


def test_max_tokens_per_doc_cuts_the_text_and_keeps_the_suffix(
    causal_lms: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cap = 4
    scorer = _load_conversion("qwen3-original", causal_lms, max_tokens_per_doc=cap)
    backend = scorer._backend
    tok = backend.tokenizer
    suffix = tok(QWEN3_SUFFIX, add_special_tokens=False)["input_ids"]
    with caplog.at_level("WARNING", logger="engine"):
        results = scorer.score(QUERY, DOCS, use_activation=False)
    # The warning names the cap that did the cutting, not only the model's context.
    assert f"truncated to fit max_tokens_per_doc={cap} or the model's" in caplog.text
    prep = backend.prepare([QUERY], DOCS, [0] * len(DOCS), None)
    cut_docs = []
    for i, doc in enumerate(DOCS):
        enc = tok(doc, add_special_tokens=False, return_offsets_mapping=True)
        long = len(enc["input_ids"]) > cap
        assert results[i].truncated == long
        # Cut by hand: the text up to the end of the 4th token.
        cut_docs.append(doc[: enc["offset_mapping"][cap - 1][1]] if long else doc)
        assert prep.input_ids[i][-len(suffix) :] == suffix  # the score is still read after it
    raw = causal_reference(
        causal_lms["qwen3"], [qwen3_prompt(QUERY, d) for d in cut_docs], ["no", "yes"]
    )
    assert_close([r.score for r in results], raw)


def test_max_tokens_per_query(causal_lms: dict[str, Path]) -> None:
    scorer = _load_conversion("qwen3-original", causal_lms, max_tokens_per_query=2)
    tok = scorer._backend.tokenizer
    enc = tok(QUERY, add_special_tokens=False, return_offsets_mapping=True)
    short_query = QUERY[: enc["offset_mapping"][1][1]]
    results = scorer.score(QUERY, DOCS, use_activation=False)
    assert all(r.truncated for r in results)
    raw = causal_reference(
        causal_lms["qwen3"], [qwen3_prompt(short_query, d) for d in DOCS], ["no", "yes"]
    )
    assert_close([r.score for r in results], raw)


def test_over_long_pairs_lose_document_text_not_the_suffix(causal_lms: dict[str, Path]) -> None:
    probe = _load_conversion("qwen3-original", causal_lms)
    tok = probe._backend.tokenizer
    empty_len = len(tok(qwen3_prompt(QUERY, ""))["input_ids"])
    limit = empty_len + 6
    scorer = _load_conversion("qwen3-original", causal_lms, max_length=limit)
    suffix = tok(QWEN3_SUFFIX, add_special_tokens=False)["input_ids"]
    results = scorer.score(QUERY, DOCS)
    prep = scorer._backend.prepare([QUERY], DOCS, [0] * len(DOCS), None)
    for i, doc in enumerate(DOCS):
        full = len(tok(qwen3_prompt(QUERY, doc))["input_ids"])
        assert results[i].truncated == (full > limit)
        assert results[i].num_tokens <= limit
        assert prep.input_ids[i][-len(suffix) :] == suffix
    with pytest.raises(InputTooLongError, match="pair 0"):
        _load_conversion("qwen3-original", causal_lms, max_length=limit, overflow="error").score(
            QUERY, DOCS[0]
        )


def test_template_alone_over_the_limit_is_an_error(causal_lms: dict[str, Path]) -> None:
    scorer = _load_conversion("qwen3-original", causal_lms, max_length=20)
    with pytest.raises(InputTooLongError, match="template alone"):
        scorer.score(QUERY, DOCS[0])


def test_truncate_text_to_tokens(causal_lms: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(causal_lms["qwen3"]))
    text = "the quick brown fox jumps over the lazy dog"
    assert truncate_text_to_tokens(tok, text, 100) == (text, False)
    cut, was_cut = truncate_text_to_tokens(tok, text, 3)
    assert was_cut and text.startswith(cut)
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= 3
    assert (
        tok(cut, add_special_tokens=False)["input_ids"]
        == tok(text, add_special_tokens=False)["input_ids"][:3]
    )


# -- pure maths ---------------------------------------------------------------------------------
def test_last_token_index_under_either_padding() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]


def test_pool_reads_real_tokens_under_either_padding() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # [B=2, L=3, H=2]
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    assert pool(hidden, mask, "lasttoken").tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert pool(hidden, mask, "mean").tolist() == [[1.0, 2.0], [9.0, 10.0]]
    assert pool(hidden, mask, "cls").tolist() == [[0.0, 1.0], [8.0, 9.0]]


# -- errors ---------------------------------------------------------------------------------------
BAD_OVERRIDES = {
    "no method": ({"classifier_from_token": ["no", "yes"]}, UnsupportedScoreType, "method"),
    "unknown method": (
        {"classifier_from_token": ["no", "yes"], "method": "softmax"},
        UnsupportedScoreType,
        "from_2_way_softmax",
    ),
    "2-way with one token": (
        {"classifier_from_token": ["yes"], "method": "from_2_way_softmax"},
        UnsupportedScoreType,
        "exactly two",
    ),
    "no_post_processing with two": (
        {"classifier_from_token": ["no", "yes"], "method": "no_post_processing"},
        UnsupportedScoreType,
        "labels",
    ),
    "qwen3 flag, one token": (
        {"classifier_from_token": ["yes"], "is_original_qwen3_reranker": True},
        UnsupportedScoreType,
        "exactly two",
    ),
    "tokens as a string": (
        {"classifier_from_token": "yes", "method": "no_post_processing"},
        UnsupportedScoreType,
        "list",
    ),
    "not in vocabulary": (
        {"classifier_from_token": ["nope", "yep"], "method": "from_2_way_softmax"},
        ModelLoadError,
        "vocabulary",
    ),
    "unsupported key": ({"head_dtype": "model"}, InputError, "supported"),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
def test_bad_hf_overrides_are_refused(case: str, causal_lms: dict[str, Path]) -> None:
    overrides, error, text = BAD_OVERRIDES[case]
    with pytest.raises(error, match=text):
        Scorer.load(causal_lms["qwen3"], hf_overrides=overrides)


def test_hf_overrides_are_read_only_and_the_callers_dict_is_untouched(
    causal_lms: dict[str, Path],
) -> None:
    overrides = {"classifier_from_token": ["no", "yes"], "method": "from_2_way_softmax"}
    scorer = Scorer.load(causal_lms["qwen3"], hf_overrides=overrides, template="qwen3_reranker")
    assert overrides == {"classifier_from_token": ["no", "yes"], "method": "from_2_way_softmax"}
    stored = scorer._backend.config.hf_overrides
    with pytest.raises(TypeError):
        stored["method"] = "x"  # type: ignore[index]


def test_encoder_cross_encoders_refuse_llm_options(bert_ce: Path) -> None:
    from engine.local.cross_encoder import CrossEncoderBackend

    assert isinstance(Scorer.load(bert_ce)._backend, CrossEncoderBackend)
    with pytest.raises(InputError, match="only to LLM rerankers"):
        Scorer.load(bert_ce, template="basic")
    with pytest.raises(UnsupportedScoreType, match="not a decoder"):
        Scorer.load(
            bert_ce, hf_overrides={"classifier_from_token": ["yes"], "method": "no_post_processing"}
        )


def test_template_option_errors(causal_lms: dict[str, Path], nemotron: Path) -> None:
    with pytest.raises(TemplateError, match="qwen3_reranker"):
        _load_conversion("qwen3-original", causal_lms, template="no_such_template")
    with pytest.raises(TemplateError, match="does not use"):
        Scorer.load(nemotron, instruction="rank these")  # nemotron's prompt has no instruction
    with pytest.raises(TemplateError, match="reserved"):
        _load_conversion("qwen3-original", causal_lms, template_kwargs={"tokenize": True})
    with pytest.raises(InputError, match="less than"):
        _load_conversion("qwen3-original", causal_lms, max_tokens_per_doc=10_000)


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_hf_overrides_and_template(
    causal_lms: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    docs = [d for d in DOCS if d]
    (tmp_path / "docs.txt").write_text("\n".join(docs) + "\n")
    overrides = json.dumps({"classifier_from_token": ["no", "yes"], "method": "from_2_way_softmax"})
    code = main(
        [
            "rerank",
            "--query",
            QUERY,
            str(tmp_path / "docs.txt"),
            "--model",
            str(causal_lms["llama"]),
            "--hf-overrides",
            overrides,
            "--template",
            "basic",
            "--json",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    raw = causal_reference(
        causal_lms["llama"], [basic_prompt(QUERY, d) for d in docs], ["no", "yes"]
    )
    by_index = {row["index"]: row["score"] for row in rows}
    assert_close([by_index[i] for i in range(len(docs))], [sigmoid(z) for z in raw])
    assert [row["score"] for row in rows] == sorted(by_index.values(), reverse=True)
    with pytest.raises(SystemExit):
        main(
            [
                "rerank",
                "--query",
                QUERY,
                str(tmp_path / "docs.txt"),
                "--model",
                str(causal_lms["llama"]),
                "--hf-overrides",
                "{not json",
            ]
        )
