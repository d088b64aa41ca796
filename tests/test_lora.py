"""LoRA adapters on rerankers: PEFT folders applied per call == the merged model, to 1e-5.

The reference of every adapter is its merged checkpoint (tests/lora_models.py writes
W + (alpha / r)·B·A into a copy of the base weights), scored by a plain Scorer without LoRA; the
PEFT test also checks against peft's own model and merge_and_unload. Several adapters share one
loaded base and are picked per call; an adapter made for another base is refused.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from engine import InputError, ModelLoadError, Scorer
from engine.local.lora_backend import LoraBackend
from engine.types import LoRARequest
from tests.llm_models import build_causal_lm, build_nemotron
from tests.lora_models import merge_adapter, write_adapter

TOL = 1e-5
QUERY = "what is the capital of france?"
DOCS = [
    "paris is the capital and largest city of france",
    "berlin",
    "sailors got scurvy from a lack of vitamin c, yes",
    "the quick brown fox jumps over the lazy dog " * 3,
]
QWEN3 = {"architectures": ["Qwen3ForSequenceClassification"],
         "classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": True}


def _scores(scorer: Scorer, docs: list[str] = DOCS) -> list[float]:
    return [r.score for r in scorer.score(QUERY, docs)]


def _close(got: list[float], want: list[float]) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g - w) <= TOL, f"pair {i}: {g} with the adapter vs {w} merged"


def _differ(a: list[float], b: list[float]) -> None:
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) > 1e-3, "the adapter changed nothing"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lora")


# -- adapter applied == merged model ---------------------------------------------------------------
def test_bert_cross_encoder_adapter_matches_the_merged_model(bert_ce: Path, work: Path) -> None:
    adapter = write_adapter(work / "bert_a", bert_ce, targets=["query", "value", "dense"],
                            modules_to_save=["classifier"], seed=1)
    merged = merge_adapter(bert_ce, adapter, work / "bert_a_merged")
    with_lora = Scorer.load(bert_ce, lora=str(adapter))
    assert isinstance(with_lora._backend, LoraBackend)
    _close(_scores(with_lora), _scores(Scorer.load(merged)))
    _differ(_scores(with_lora), _scores(Scorer.load(bert_ce)))


def test_rslora_and_rank_pattern_scale_like_peft(bert_ce: Path, work: Path) -> None:
    adapter = write_adapter(work / "bert_rs", bert_ce, targets=["key"], r=4, alpha=4.0,
                            rslora=True, seed=2)
    merged = merge_adapter(bert_ce, adapter, work / "bert_rs_merged")
    _close(_scores(Scorer.load(bert_ce, lora=str(adapter))), _scores(Scorer.load(merged)))


@pytest.fixture(scope="module")
def decoders(work: Path) -> dict[str, Path]:
    """Untied heads, so an lm_head update can be merged into a saved lm_head.weight."""
    return {
        "qwen3": build_causal_lm(work / "qwen3", "qwen3", seed=21, tie=False),
        "qwen2": build_causal_lm(work / "qwen2", "qwen2", seed=22, tie=False),
        "gemma": build_causal_lm(work / "gemma", "gemma", seed=23, tie=False),
    }


CONVERTED = {
    "qwen3": (QWEN3, "qwen3_reranker"),
    "qwen2": ({"classifier_from_token": ["0", "1"], "method": "from_2_way_softmax"},
              "mxbai_rerank_v2"),
    "gemma": ({"classifier_from_token": ["Yes"], "method": "no_post_processing"},
              "bge_reranker_v2_gemma"),
}


@pytest.mark.parametrize("family", sorted(CONVERTED))
def test_converted_llm_reranker_adapter_matches_the_merged_model(
    family: str, decoders: dict[str, Path], work: Path
) -> None:
    """Attention and MLP updates, and an lm_head update that moves the classifier token rows."""
    base = decoders[family]
    overrides, template = CONVERTED[family]
    adapter = write_adapter(work / f"{family}_a", base, task_type="CAUSAL_LM", seed=3,
                            targets=["q_proj", "v_proj", "down_proj", "lm_head"])
    merged = merge_adapter(base, adapter, work / f"{family}_merged")
    opts = {"hf_overrides": overrides, "template": template}
    got = _scores(Scorer.load(base, lora=str(adapter), **opts))
    _close(got, _scores(Scorer.load(merged, **opts)))
    _differ(got, _scores(Scorer.load(base, **opts)))


def test_seq_cls_llm_reranker_adapter_with_a_new_score_head(
    qwen3_llm_reranker: Path, work: Path
) -> None:
    adapter = write_adapter(work / "seqcls_a", qwen3_llm_reranker, targets=["k_proj", "o_proj"],
                            modules_to_save=["score"], seed=4)
    merged = merge_adapter(qwen3_llm_reranker, adapter, work / "seqcls_merged")
    got = _scores(Scorer.load(qwen3_llm_reranker, lora=str(adapter)))
    _close(got, _scores(Scorer.load(merged)))
    _differ(got, _scores(Scorer.load(qwen3_llm_reranker)))


def test_nemotron_bidirectional_adapter(work: Path) -> None:
    base = build_nemotron(work / "nemotron")
    adapter = write_adapter(work / "nemo_a", base, targets=["q_proj", "up_proj", "score"], seed=5)
    merged = merge_adapter(base, adapter, work / "nemo_merged")
    _close(_scores(Scorer.load(base, lora=str(adapter))), _scores(Scorer.load(merged)))


# -- several adapters on one base, chosen per call ---------------------------------------------
def test_several_adapters_on_one_base_without_reloading(bert_ce: Path, work: Path) -> None:
    a = write_adapter(work / "multi_a", bert_ce, targets=["query"], seed=6)
    b = write_adapter(work / "multi_b", bert_ce, targets=["value"], modules_to_save=["classifier"],
                      seed=7)
    want_a = _scores(Scorer.load(merge_adapter(bert_ce, a, work / "multi_a_m")))
    want_b = _scores(Scorer.load(merge_adapter(bert_ce, b, work / "multi_b_m")))
    want_base = _scores(Scorer.load(bert_ce))
    scorer = Scorer.load(bert_ce, lora_modules={"a": str(a), "b": str(b)})
    backend = scorer._backend
    model = backend.model
    assert [x.name for x in backend.lora_adapters()] == ["a", "b"]
    for name, want in [("b", want_b), (None, want_base), ("a", want_a), ("b", want_b)]:
        _close([r.score for r in scorer.score(QUERY, DOCS, lora_request=name)], want)
        by_index = {r.index: r.score for r in scorer.rerank(QUERY, DOCS, lora_request=name)}
        _close([by_index[i] for i in range(len(DOCS))], want)
    _close(_scores(scorer), want_base)  # no adapter named: the base model
    assert backend.model is model  # never reloaded
    # vLLM's spelling: a LoRARequest registers on first use, then is found by name.
    with backend.using_lora(LoRARequest("c", 3, str(a))) as info:
        assert info is not None and info.lora_int_id == 3
        _close(_scores(scorer), want_a)
    _close([r.score for r in scorer.score(QUERY, DOCS, lora_request=LoRARequest("c", 3, str(a)))],
           want_a)
    assert [x.name for x in backend.lora_adapters()] == ["a", "b", "c"]
    backend.remove_lora("c")
    with pytest.raises(InputError, match="No LoRA adapter named 'c'"):
        with backend.using_lora("c"):
            pass


def test_threads_with_different_adapters_do_not_mix(bert_ce: Path, work: Path) -> None:
    a = write_adapter(work / "thr_a", bert_ce, targets=["query"], seed=8)
    b = write_adapter(work / "thr_b", bert_ce, targets=["key"], seed=9)
    backend = Scorer.load(bert_ce, lora_modules={"a": str(a), "b": str(b)})._backend
    want = {n: _scores(Scorer.load(merge_adapter(bert_ce, p, work / f"thr_{n}_m")))
            for n, p in (("a", a), ("b", b))}
    from engine.calls import check_call

    call = check_call(QUERY, DOCS, use_activation=None, truncate_prompt_tokens=None,
                      max_length=backend.max_length)
    errors: list[str] = []

    def run(name: str) -> None:
        for _ in range(5):
            with backend.using_lora(name):
                got = [r.score for r in backend.score_pairs(call)]
            if max(abs(x - y) for x, y in zip(got, want[name], strict=True)) > TOL:
                errors.append(name)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- refusals ----------------------------------------------------------------------------------
def test_an_adapter_for_another_base_is_refused(
    bert_ce: Path, qwen3_llm_reranker: Path, work: Path
) -> None:
    qwen_adapter = write_adapter(work / "qwen_for_bert", qwen3_llm_reranker, targets=["q_proj"])
    with pytest.raises(ModelLoadError, match="doesn't fit .*another base model"):
        Scorer.load(bert_ce, lora=str(qwen_adapter))
    # Same module names, other sizes: a BERT of hidden 48.
    other = work / "bert48"
    from transformers import BertConfig, BertForSequenceClassification

    from tests.models import bert_tokenizer

    torch.manual_seed(0)
    tok = bert_tokenizer()
    BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, num_labels=1)).save_pretrained(other)
    tok.save_pretrained(other)
    wide = write_adapter(work / "wide", other, targets=["query"])
    with pytest.raises(ModelLoadError, match="48x48 .*32x32|32x32 here"):
        Scorer.load(bert_ce, lora=str(wide))


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"use_dora": True}, "vLLM does not yet support DoRA."),
     ({"bias": "all"}, "Adapter bias is not supported."),
     ({"modules_to_save": ["pooler"]}, "Unsupported modules_to_save: \\['pooler'\\]"),
     ({"init_lora_weights": "pissa"}, "changes the base weights")],
)
def test_unsupported_lora_features_are_refused(
    bert_ce: Path, work: Path, extra: dict, message: str
) -> None:
    adapter = write_adapter(work / f"bad_{len(message)}", bert_ce, targets=["query"])
    config = json.loads((adapter / "adapter_config.json").read_text())
    config.update(extra)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        Scorer.load(bert_ce, lora=str(adapter))


def test_max_lora_rank_and_bad_folders(bert_ce: Path, work: Path, tmp_path: Path) -> None:
    adapter = write_adapter(work / "rank8", bert_ce, targets=["query"], r=8)
    with pytest.raises(ModelLoadError, match="LoRA rank 8 is greater than max_lora_rank 4"):
        Scorer.load(bert_ce, lora=str(adapter), max_lora_rank=4)
    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        Scorer.load(bert_ce, lora=str(tmp_path))
    backend = Scorer.load(bert_ce, enable_lora=True)._backend
    backend.add_lora("x", str(adapter))
    with pytest.raises(InputError, match="already loaded from"):
        backend.add_lora("x", str(work / "bert_rs"))
    with pytest.raises(InputError, match="lora_int_id 1 already belongs"):
        backend.add_lora("y", str(adapter), lora_int_id=1)
    with pytest.raises(InputError, match="id must be > 0"):
        LoRARequest("z", 0, str(adapter))


def test_lora_on_a_bi_encoder_is_refused(st_bi_encoder: Path) -> None:
    with pytest.raises(InputError, match="cross-encoders and LLM rerankers"):
        Scorer.load(st_bi_encoder, enable_lora=True)


# -- peft itself as the oracle -----------------------------------------------------------------
def test_a_folder_saved_by_peft_matches_peft(bert_ce: Path, work: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(10)
    model = AutoModelForSequenceClassification.from_pretrained(str(bert_ce)).eval()
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=16, target_modules=["query",
                             "value", "intermediate.dense"], init_lora_weights=False)
    peft_model = peft.get_peft_model(model, config).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p))  # a trained-looking head
    folder = work / "peft_saved"
    peft_model.save_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(bert_ce))
    enc = tok([QUERY] * len(DOCS), DOCS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.sigmoid(peft_model(**enc).logits[:, 0]).tolist()
        merged = peft_model.merge_and_unload()
        want_merged = torch.sigmoid(merged(**enc).logits[:, 0]).tolist()
    got = _scores(Scorer.load(bert_ce, lora=str(folder)))
    _close(got, want)
    _close(got, want_merged)


def test_config_fields(bert_ce: Path) -> None:
    from engine import ScorerConfig

    config = ScorerConfig(lora_modules={"a": "/x"})
    assert config.enable_lora and dict(config.lora_modules or {}) == {"a": "/x"}
    with pytest.raises(InputError, match="lora_modules maps"):
        ScorerConfig(lora_modules={"a": ""})


def test_a_plain_scorer_of_the_same_base_is_untouched(
    qwen3_llm_reranker: Path, bert_ce: Path, work: Path
) -> None:
    """The LoRA wrappers live in the process-wide cached model; a scorer loaded without LoRA
    (before or after, sharing those weights) still scores the base model, and so does a
    padding-free forward built after the wrappers went in."""
    for base, targets in ((bert_ce, ["query", "value"]), (qwen3_llm_reranker, ["q_proj"])):
        before = _scores(Scorer.load(base))
        adapter = write_adapter(work / f"share_{base.name}", base, targets=targets, seed=12)
        with_lora = Scorer.load(base, lora=str(adapter))
        after = Scorer.load(base)
        _close(_scores(after), before)
        _differ(_scores(with_lora), before)
        _close(_scores(after), before)


def test_lora_request_without_lora_enabled_is_vllms_error(bert_ce: Path) -> None:
    scorer = Scorer.load(bert_ce)
    with pytest.raises(InputError, match="Got lora_request a but LoRA is not enabled!"):
        scorer.score(QUERY, DOCS, lora_request="a")
    with pytest.raises(InputError, match="LoRA is not enabled"):
        scorer.rerank(QUERY, DOCS, lora_request="a")


def test_llm_score_with_a_lora_request_matches_the_merged_model(bert_ce: Path, work: Path) -> None:
    from engine import LLM

    adapter = write_adapter(work / "llm_a", bert_ce, targets=["query", "value"], seed=11)
    want = _scores(Scorer.load(merge_adapter(bert_ce, adapter, work / "llm_a_m")))
    llm = LLM(str(bert_ce), enable_lora=True, max_lora_rank=16, max_loras=2)
    got = [o.outputs.score for o in llm.score(QUERY, DOCS, use_tqdm=False,
                                              lora_request=LoRARequest("a", 1, str(adapter)))]
    _close(got, want)
    base = [o.outputs.score for o in llm.score(QUERY, DOCS, use_tqdm=False)]
    _differ(got, base)
    with pytest.raises(InputError, match=r"^Got lora_request .* but LoRA is not enabled!$"):
        LLM(str(bert_ce)).score(QUERY, DOCS, lora_request=LoRARequest("a", 1, str(adapter)))


def test_scorer_serve_serves_each_adapter_under_its_own_model_name(
    bert_ce: Path, work: Path
) -> None:
    """vLLM's --lora-modules: a request's model picks the adapter; /v1/models lists it; two
    adapters' requests in one micro-batch are never merged into one call."""
    import asyncio

    import httpx

    from engine.cli_options import lora_module
    from engine.server import ServerConfig, create_app
    from tests.test_server import ServerThread

    a = write_adapter(work / "srv_a", bert_ce, targets=["query"], seed=12)
    want_a = _scores(Scorer.load(merge_adapter(bert_ce, a, work / "srv_a_m")))
    want_base = _scores(Scorer.load(bert_ce))
    assert lora_module(f"a={a}") == ("a", str(a))
    assert lora_module(f'{{"name": "a", "path": "{a}"}}') == ("a", str(a))
    scorer = Scorer.load(bert_ce, lora_modules=dict([lora_module(f"a={a}")]))
    app = create_app(scorer, ServerConfig(served_model_name="base", batch_wait_ms=50.0))

    async def both(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return list(await asyncio.gather(*[
                client.post("/score", json={"model": m, "queries": QUERY, "documents": DOCS})
                for m in ("a", "base", "a", None)]))

    with ServerThread(app) as srv:
        answers = asyncio.run(both(srv.url))
        models = httpx.get(srv.url + "/v1/models", timeout=30).json()["data"]
        unknown = httpx.post(srv.url + "/rerank", timeout=30,
                             json={"model": "b", "query": QUERY, "documents": DOCS})
    for r, (model, want) in zip(answers, [("a", want_a), ("base", want_base), ("a", want_a),
                                          ("base", want_base)], strict=True):
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model
        _close([d["score"] for d in r.json()["data"]], want)
    assert [(m["id"], m["parent"]) for m in models] == [("base", None), ("a", "base")]
    assert models[1]["root"] == str(a.resolve())
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "The model `b` does not exist."
