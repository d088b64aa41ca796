"""Multimodal cross-encoders (Qwen3-VL-Reranker, jina-reranker-m0) and image inputs.

Parity: every score equals the model's own forward on its processor's output, one pair at a
time, to 1e-5 in float32. The references use transformers' real Qwen3VLProcessor /
Qwen2VLProcessor (built without a video processor, which needs torchvision) on prompts written
out here from each model's format, then the full Qwen3VLForConditionalGeneration logits
(z_yes − z_no) or, for jina, the remote code's computation: the last hidden state at the
appended token 100 through the score MLP read from the weights file, minus 2.65.
"""

from __future__ import annotations

import base64
import http.server
import math
import random
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

from engine import InputError, Scorer
from engine.calls import ScoreCall
from engine.local.jina_vl import JinaVLBackend
from engine.local.qwen_vl import Qwen3VLRerankerBackend
from engine.media import (
    ImagePart,
    MediaError,
    MediaNotSupportedError,
    MediaPolicy,
    ScoreContent,
    TextPart,
    load_image,
    media_not_supported_message,
    parse_score_items,
    refuse_media,
)
from tests.vl_models import build_jina_vl, build_qwen3_vl, content, data_url, image, png_bytes

TOL = 1e-5
QWEN3_VL = {"architectures": ["Qwen3VLForSequenceClassification"],
            "classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": True}
TASK = "Given a search query, retrieve relevant candidates that answer the query."
PH = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vl")


@pytest.fixture(scope="module")
def qwen3_vl(vl_dir: Path) -> Path:
    return build_qwen3_vl(vl_dir / "qwen3_vl")


@pytest.fixture(scope="module")
def jina(vl_dir: Path) -> Path:
    return build_jina_vl(vl_dir / "jina")


# -- references --------------------------------------------------------------------------------
def _processor(path: Path, cls: Any) -> Any:
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def check(self: Any, name: str, arg: Any) -> Any:
        if name == "video_processor" and arg is None:
            return None  # no torchvision here: image-only processor
        return original(self, name, arg)

    with mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", check):
        return cls(image_processor=AutoImageProcessor.from_pretrained(str(path)),
                   tokenizer=AutoTokenizer.from_pretrained(str(path)), video_processor=None)


def _side(item: Any) -> tuple[str, list[Any]]:
    """vLLM's parse of one side, written out: placeholders in front, texts joined by "\\n"."""
    if isinstance(item, str):
        return item, []
    texts = [p for p in item if isinstance(p, str)]
    images = [p for p in item if not isinstance(p, str)]
    return PH * len(images) + "\n".join(texts), images


def qwen3_vl_reference(path: Path, pairs: list[tuple[Any, Any]]) -> list[float]:
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    proc = _processor(path, Qwen3VLProcessor)
    lm = Qwen3VLForConditionalGeneration.from_pretrained(str(path)).eval()
    yes, no = proc.tokenizer.convert_tokens_to_ids(["yes", "no"])
    out = []
    for q, d in pairs:
        (qt, qi), (dt, di) = _side(q), _side(d)
        prompt = (
            "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
            'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
            f"<|im_end|>\n<|im_start|>user\n<Instruct>: {TASK}<Query>:{qt}\n<Document>:{dt}"
            "<|im_end|>\n<|im_start|>assistant\n"
        )
        inputs = proc(text=[prompt], images=(qi + di) or None, return_tensors="pt")
        with torch.no_grad():
            z = lm(**inputs).logits[0, -1]
        out.append(1 / (1 + math.exp(-float(z[yes] - z[no]))))
    return out


def jina_reference(path: Path, pairs: list[tuple[Any, Any]]) -> list[float]:
    from safetensors.torch import load_file
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    proc = _processor(path, Qwen2VLProcessor)
    lm = Qwen2VLForConditionalGeneration.from_pretrained(str(path)).eval()
    w = load_file(str(path / "model.safetensors"))
    out = []
    for q, d in pairs:
        (qt, qi), (dt, di) = _side(q), _side(d)
        prompt = f"**Document**:\n{dt}\n**Query**:\n{qt}"
        inputs = dict(proc(text=[prompt], images=(di + qi) or None, return_tensors="pt"))
        for key, extra in (("input_ids", 100), ("attention_mask", 1), ("mm_token_type_ids", 0)):
            if key in inputs:
                inputs[key] = torch.cat([inputs[key], torch.tensor([[extra]])], dim=1)
        with torch.no_grad():
            h = lm.model(**inputs, output_hidden_states=True).hidden_states[-1][0, -1]
            x = torch.relu(h @ w["score.0.weight"].T + w["score.0.bias"])
            z = float(x @ w["score.2.weight"][0] + w["score.2.bias"][0])
        out.append(1 / (1 + math.exp(-(z - 2.65))))
    return out


def _as_param(item: Any) -> Any:
    return item if isinstance(item, str) else content(*item)


def _score(scorer: Scorer, pairs: list[tuple[Any, Any]]) -> list[float]:
    """N:N through Scorer.score, the public path, with content items as users write them."""
    queries = [_as_param(q) for q, _ in pairs]
    docs = [_as_param(d) for _, d in pairs]
    return [r.score for r in scorer.score(queries, docs)]


def _close(got: list[float], want: list[float]) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g - w) <= TOL, f"pair {i}: {g} vs the model's own forward {w}"


IMG = [image(k, size) for k, size in enumerate([(70, 50), (40, 90), (96, 64), (33, 33)])]
PAIRS: list[tuple[Any, Any]] = [
    ("a red bicycle", ["a photo", IMG[0]]),
    ("a red bicycle", [IMG[1]]),
    (["which is it?", IMG[2]], ["the same one", IMG[3]]),  # images on both sides
    ("what is bm25?", "bm25 is a ranking function"),  # text only
    ("two pictures", [IMG[0], "and", IMG[2]]),
    (["text-only content"], ["also text"]),
]


@pytest.fixture(scope="module")
def qwen3_scorer(qwen3_vl: Path) -> Scorer:
    return Scorer.load(qwen3_vl, hf_overrides=QWEN3_VL, batch_size=4)


def test_qwen3_vl_matches_its_own_forward(qwen3_vl: Path, qwen3_scorer: Scorer) -> None:
    assert isinstance(qwen3_scorer._backend, Qwen3VLRerankerBackend)
    assert qwen3_scorer._backend.template.name == "qwen3_vl_reranker"
    want = qwen3_vl_reference(qwen3_vl, PAIRS)
    _close(_score(qwen3_scorer, PAIRS), want)
    # Shuffled (other batch company, other padding): the same scores.
    order = list(range(len(PAIRS)))
    random.Random(5).shuffle(order)
    shuffled = _score(qwen3_scorer, [PAIRS[i] for i in order])
    _close([shuffled[order.index(i)] for i in range(len(PAIRS))], want)


def test_jina_vl_matches_its_own_forward(jina: Path) -> None:
    scorer = Scorer.load(jina, batch_size=3)
    assert isinstance(scorer._backend, JinaVLBackend)
    _close(_score(scorer, PAIRS), jina_reference(jina, PAIRS))


@pytest.mark.parametrize("which", ["qwen3", "jina"])
def test_the_image_changes_the_score(which: str, qwen3_scorer: Scorer, jina: Path) -> None:
    scorer = qwen3_scorer if which == "qwen3" else Scorer.load(jina)
    a, b, none = _score(scorer, [("q", [IMG[0]]), ("q", [IMG[2]]), ("q", "")])
    assert abs(a - b) > 1e-3 and abs(a - none) > 1e-3, (a, b, none)


def test_text_only_calls_through_scorer_match(qwen3_vl: Path, qwen3_scorer: Scorer,
                                              jina: Path) -> None:
    """Plain strings go through Scorer.score unchanged (no call-path change needed for them)."""
    docs = ["bm25 is a ranking function", "cats sleep a lot"]
    _close([r.score for r in qwen3_scorer.score("what is bm25?", docs)],
           qwen3_vl_reference(qwen3_vl, [("what is bm25?", d) for d in docs]))
    _close([r.score for r in Scorer.load(jina).score("what is bm25?", docs)],
           jina_reference(jina, [("what is bm25?", d) for d in docs]))


def test_one_query_image_for_many_documents(qwen3_vl: Path, qwen3_scorer: Scorer) -> None:
    """1:N with an image query: the query image is loaded once and read by every pair."""
    docs = ["a bicycle", ["a photo", IMG[1]], "nothing"]
    query = ["find this", IMG[0]]
    call = ScoreCall(
        queries=parse_score_items(content(*query), side="queries"),  # type: ignore[arg-type]
        documents=parse_score_items([_as_param(d) for d in docs], side="documents"),  # type: ignore[arg-type]
        query_index=[0, 0, 0], use_activation=None, truncate_prompt_tokens=None)
    got = [r.score for r in qwen3_scorer._backend.score_pairs(call)]
    _close(got, qwen3_vl_reference(qwen3_vl, [(query, d) for d in docs]))


def test_use_activation_false_gives_the_calibrated_logit(jina: Path) -> None:
    scorer = Scorer.load(jina)
    (p,) = jina_reference(jina, [("q", "a document")])
    (raw,) = [r.score for r in scorer.score("q", "a document", use_activation=False)]
    assert abs(raw - math.log(p / (1 - p))) <= 1e-4  # z − 2.65, as vLLM's logit_mean


def test_a_corrupt_image_names_the_document(qwen3_scorer: Scorer) -> None:
    bad = "data:image/png;base64," + base64.b64encode(b"\x89PNG not really").decode()
    docs = parse_score_items(["fine", {"content": [{"type": "image_url",
                                                     "image_url": {"url": bad}}]}],
                             side="documents")
    call = ScoreCall(queries=["q"], documents=docs, query_index=[0, 0],  # type: ignore[arg-type]
                     use_activation=None, truncate_prompt_tokens=None)
    with pytest.raises(MediaError, match="document 1, image 0: the image could not be decoded"):
        qwen3_scorer._backend.score_pairs(call)


def test_lora_on_the_multimodal_rerankers(qwen3_vl: Path, jina: Path, vl_dir: Path) -> None:
    from tests.lora_models import merge_adapter, write_adapter

    pairs = PAIRS[:3]
    a = write_adapter(vl_dir / "q3_lora", qwen3_vl, targets=["q_proj", "lm_head", "attn.qkv"],
                      task_type="CAUSAL_LM", seed=3)
    merged = merge_adapter(qwen3_vl, a, vl_dir / "q3_merged")
    _close(_score(Scorer.load(qwen3_vl, hf_overrides=QWEN3_VL, lora=str(a)), pairs),
           _score(Scorer.load(merged, hf_overrides=QWEN3_VL), pairs))
    # jina: adapters name the published (old) layout: model.layers.*, visual.*, score.*
    b = write_adapter(vl_dir / "jina_lora", jina, targets=["v_proj", "qkv", "score.2"], seed=4)
    merged_b = merge_adapter(jina, b, vl_dir / "jina_merged")
    got = _score(Scorer.load(jina, lora=str(b)), pairs)
    _close(got, _score(Scorer.load(merged_b), pairs))
    base = _score(Scorer.load(jina), pairs)
    assert max(abs(x - y) for x, y in zip(got, base, strict=True)) > 1e-3


# -- the input type and the media policy ---------------------------------------------------------
def test_parsing_vllm_score_multimodal_param() -> None:
    items = parse_score_items(
        ["plain", {"content": [{"type": "text", "text": "a"},
                               {"type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AA"}},
                               {"image_url": {"url": "file:///x.png"}}, "b"]}],
        side="documents",
    )
    assert items[0] == "plain"
    assert items[1] == ScoreContent((TextPart("a"), ImagePart("data:image/png;base64,AA"),
                                     ImagePart("file:///x.png"), TextPart("b")))
    assert items[1].prompt_text() == PH * 2 + "a\nb"  # type: ignore[union-attr]
    assert items[1].to_param()["content"][1]["image_url"]["url"].startswith("data:")  # type: ignore[union-attr]
    for bad, message in [
        ({"content": "text"}, "must be a list of parts"),
        ({"content": []}, "is empty"),
        ({"content": [{"type": "video_url", "video_url": {"url": "x"}}]}, "videos are not"),
        ({"content": [{"type": "audio"}]}, "unknown part type 'audio'"),
        ({"content": [{"type": "image_url", "image_url": {}}]}, "without a URL"),
        ({"content": [{"type": "text"}], "role": "user"}, "unknown key"),
        (3, "is int"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_score_items([bad], side="documents")


def test_text_models_refuse_images_with_vllms_message() -> None:
    items = parse_score_items(["a", content("b", IMG[0])], side="documents")
    with pytest.raises(MediaNotSupportedError) as err:
        refuse_media(items, architecture="BertForSequenceClassification", side="documents")
    assert str(err.value).startswith(
        "MultiModalParam is not supported for BertForSequenceClassification"
    )
    assert media_not_supported_message("X") == "MultiModalParam is not supported for X"


def test_local_files_only_under_the_allowed_directory(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(png_bytes(IMG[0]))
    (tmp_path / "outside.png").write_bytes(png_bytes(IMG[1]))
    (allowed / "link.png").symlink_to(tmp_path / "outside.png")
    url = (allowed / "a.png").as_uri()
    with pytest.raises(MediaError, match="without allowed_local_media_path"):
        load_image(url, policy=MediaPolicy(), where="document 0")
    policy = MediaPolicy(allowed_local_media_path=str(allowed))
    assert load_image(url, policy=policy, where="document 0").size == (70, 50)
    for escape in [(tmp_path / "outside.png").as_uri(), (allowed / "link.png").as_uri(),
                   f"file://{allowed}/../outside.png"]:
        with pytest.raises(MediaError, match="must be a subpath"):
            load_image(escape, policy=policy, where="document 0")
    with pytest.raises(InputError, match="not an existing directory"):
        MediaPolicy(allowed_local_media_path=str(tmp_path / "missing"))


@pytest.fixture()
def http_server(tmp_path: Path) -> Any:
    (tmp_path / "img.png").write_bytes(png_bytes(IMG[2]))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_only_when_allowed_with_caps(http_server: str) -> None:
    url = http_server + "/img.png"
    with pytest.raises(MediaError, match="allow_http_media=True"):
        load_image(url, policy=MediaPolicy(), where="document 2")
    assert load_image(url, policy=MediaPolicy(allow_http=True), where="d").size == (96, 64)
    with pytest.raises(MediaError, match="allowed domains"):
        load_image(url, policy=MediaPolicy(allow_http=True, allowed_media_domains=("x.org",)),
                   where="d")
    with pytest.raises(MediaError, match="over the cap"):
        load_image(url, policy=MediaPolicy(allow_http=True, max_bytes=100), where="d")
    with pytest.raises(MediaError, match="HTTP 404"):
        load_image(http_server + "/missing.png", policy=MediaPolicy(allow_http=True), where="d")


def test_data_urls_size_caps_and_conversion() -> None:
    policy = MediaPolicy()
    rgba = load_image(data_url(image(9, mode="RGBA")), policy=policy, where="d")
    assert rgba.mode == "RGB"
    with pytest.raises(MediaError, match="over the cap of 1,000"):
        load_image(data_url(IMG[0]), policy=MediaPolicy(max_pixels=1000), where="d")
    with pytest.raises(MediaError, match="over the cap"):
        load_image(data_url(IMG[0]), policy=MediaPolicy(max_bytes=64), where="d")
    for bad, message in [("data:text/plain;base64,aGk=", "is not an image"),
                         ("data:image/png,abc", "only base64"),
                         ("data:image/png;base64,@@@", "not valid base64"),
                         ("ftp://x/y.png", "not a data:, file:// or http")]:
        with pytest.raises(MediaError, match=message):
            load_image(bad, policy=policy, where="d")


def test_media_settings_are_scorer_config_fields(tmp_path: Path) -> None:
    from engine import ScorerConfig

    config = ScorerConfig(allowed_local_media_path=str(tmp_path), allow_http_media=True,
                          allowed_media_domains=["example.org"], max_media_bytes=10)
    policy = config.media_policy()
    assert policy.allow_http and policy.allowed_media_domains == ("example.org",)
    assert policy.allowed_local_media_path == str(tmp_path.resolve())
    with pytest.raises(InputError, match="max_bytes must be a positive int"):
        ScorerConfig(max_media_bytes=0)


# -- templates/README.md runs as written -----------------------------------------------------------
def test_templates_readme_examples_run(qwen3_vl: Path, jina: Path, vl_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Each ```python block of templates/README.md, its ``path/to/...`` names swapped for tiny
    offline fixtures by this table only (an unknown one fails the test)."""
    import re

    from tests.gte_models import build_gte_new
    from tests.llm_models import build_causal_lm
    from tests.lora_models import write_adapter

    readme = Path(__file__).resolve().parent.parent / "templates" / "README.md"
    blocks = re.findall(r"^```python\n(.*?)^```", readme.read_text(), re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4
    qwen3 = build_causal_lm(vl_dir / "readme_qwen3", "qwen3", seed=1, tie=False)
    photo = vl_dir / "photo.png"
    photo.write_bytes(png_bytes(IMG[0]))
    table = {
        "path/to/gte-multilingual-reranker-base": build_gte_new(vl_dir / "readme_gte"),
        "path/to/Qwen3-VL-Reranker-2B": qwen3_vl,
        "path/to/photo.png": photo,
        "path/to/jina-reranker-m0": jina,
        "path/to/Qwen3-Reranker-0.6B": qwen3,
        "path/to/qwen3-lora-adapter": write_adapter(vl_dir / "readme_lora", qwen3,
                                                    targets=["q_proj"], task_type="CAUSAL_LM"),
    }
    for source in blocks:
        for name, path in table.items():
            source = source.replace(f'"{name}"', repr(str(path)))
        assert "path/to/" not in source, f"a placeholder this test doesn't know: {source}"
        exec(compile(source, str(readme), "exec"), {})  # noqa: S102
    assert "0." in capsys.readouterr().out


def test_the_input_type_needs_no_torch_pillow_or_framework() -> None:
    """engine.media is what the server and the wrappers build items with: stdlib only."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'PIL', 'langchain_core',\n"
        "                                  'llama_index'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from engine.media import parse_score_items\n"
        "items = parse_score_items({'content': [{'type': 'text', 'text': 'x'}]}, side='d')\n"
        "print(items[0].prompt_text())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "x"


def test_rerank_takes_image_documents_and_returns_them(qwen3_vl: Path,
                                                      qwen3_scorer: Scorer) -> None:
    docs = [content("a photo", IMG[0]), "a bicycle", content(IMG[2])]
    ranked = qwen3_scorer.rerank("a red bicycle", docs)
    want = qwen3_vl_reference(qwen3_vl, [("a red bicycle", ["a photo", IMG[0]]),
                                         ("a red bicycle", "a bicycle"),
                                         ("a red bicycle", [IMG[2]])])
    assert sorted(r.index for r in ranked) == [0, 1, 2]
    _close([next(r.score for r in ranked if r.index == i) for i in range(3)], want)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert ranked[[r.index for r in ranked].index(1)].document == "a bicycle"


def test_a_text_model_refuses_content_items_through_scorer(bert_ce: Path) -> None:
    with pytest.raises(InputError, match="multimodal input"):
        Scorer.load(bert_ce).score("q", [content("a photo", IMG[0])])


def test_llm_score_takes_vllms_multimodal_param(qwen3_vl: Path) -> None:
    """vLLM's spelling: LLM(..., hf_overrides=...).score(text, [{"content": [...]}, ...])."""
    from engine import LLM

    llm = LLM(str(qwen3_vl), hf_overrides=QWEN3_VL)
    docs = [content("a photo", IMG[0]), "a bicycle"]
    # As in vLLM, the score template comes with the call (LLM(chat_template=) is not read).
    got = [o.outputs.score for o in llm.score("a red bicycle", docs, use_tqdm=False,
                                              chat_template="qwen3_vl_reranker")]
    _close(got, qwen3_vl_reference(qwen3_vl, [("a red bicycle", ["a photo", IMG[0]]),
                                              ("a red bicycle", "a bicycle")]))


def test_wrappers_score_images_as_content_items(qwen3_scorer: Scorer, bert_ce: Path) -> None:
    """LangChain: metadata[image_key] holds the image URL; LlamaIndex: an ImageNode. Both score
    exactly what Scorer.score gives the same {"content": [...]} items, and never change input."""
    import copy as copy_module

    from langchain_core.documents import Document
    from llama_index.core.schema import ImageNode, NodeWithScore, TextNode

    import langchain_scorer
    import llamaindex_scorer

    want = [r.score for r in qwen3_scorer.score(
        "a red bicycle", [content("a photo", IMG[0]), "a bicycle", content(IMG[2])])]
    docs = [Document(page_content="a photo", id="0", metadata={"image": data_url(IMG[0])}),
            Document(page_content="a bicycle", id="1"),
            Document(page_content="", id="2", metadata={"image": data_url(IMG[2])})]
    before = copy_module.deepcopy(docs)
    lc = langchain_scorer.ScorerRerank(scorer=qwen3_scorer, top_n=None, image_key="image")
    got = {d.id: d.metadata["relevance_score"]
           for d in lc.compress_documents(docs, "a red bicycle")}
    _close([got["0"], got["1"], got["2"]], want)
    assert docs == before

    png = base64.b64encode(png_bytes(IMG[0])).decode()
    nodes = [NodeWithScore(node=ImageNode(text="a photo", image=png, id_="0")),
             NodeWithScore(node=TextNode(text="a bicycle", id_="1")),
             NodeWithScore(node=ImageNode(image_url=data_url(IMG[2]), id_="2"))]
    li = llamaindex_scorer.ScorerRerank(scorer=qwen3_scorer, top_n=None)
    out = {n.node.id_: n.score for n in li.postprocess_nodes(nodes, query_str="a red bicycle")}
    _close([out["0"], out["1"], out["2"]], want)

    text_model = Scorer.load(bert_ce)
    with pytest.raises(InputError, match="multimodal input"):
        llamaindex_scorer.ScorerRerank(scorer=text_model).postprocess_nodes(nodes, query_str="q")
    with pytest.raises(InputError, match="multimodal input"):
        langchain_scorer.ScorerRerank(scorer=text_model, image_key="image").compress_documents(
            docs, "q")


@pytest.mark.parametrize("bad", ["\ud800", {"content": ["ok \udfff"]},
                                 {"content": [{"type": "text", "text": "\ud800"}]}])
def test_a_lone_surrogate_is_refused_for_image_models_too(qwen3_scorer: Scorer, bad: Any) -> None:
    with pytest.raises(InputError, match="lone surrogate"):
        qwen3_scorer.score("q", ["fine", bad])
