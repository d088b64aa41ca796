"""GteNew (mGTE-TRM) cross-encoders, natively: rotary positions, gated GELU feed-forward, the
published weight layout, no remote code.

The reference is written in tests/gte_models.py from the published architecture (new-impl's
NewModel: post-LayerNorm blocks, NeoX rotary with fixed or mixed NTK scaling, up/gate halves,
the CLS pooler and classifier), one unpadded sequence at a time with plain tensor maths.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch

from engine import ModelLoadError, Scorer
from engine.errors import InputError, UnsupportedScoreType
from engine.local.gte import GteNewBackend, rotary_inv_freq
from tests.gte_models import build_gte_new, reference_logit

TOL = 1e-5
QUERIES = ["what is the capital of france?", "vitamin c and scurvy"]
DOCS = [
    "paris is the capital and largest city of france",
    "berlin is in germany",
    "sailors got scurvy from a lack of vitamin c",
    "",
    "the quick brown fox jumps over the lazy dog " * 4,
    "bm25 is a ranking function",
]


@pytest.fixture(scope="module")
def gte_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gte")


@pytest.fixture(scope="module")
def gte(gte_dir: Path) -> Path:
    """As published: fixed NTK scaling (gte-multilingual-reranker-base uses factor 8)."""
    return build_gte_new(gte_dir / "ntk", rope_scaling={"type": "ntk", "factor": 8.0})


def _reference(path: Path, queries: list[str], docs: list[str], *, activation: bool = True):
    from transformers import AutoTokenizer, PretrainedConfig

    tok = AutoTokenizer.from_pretrained(str(path), config=PretrainedConfig())
    out = []
    for q, d in zip(queries, docs, strict=True):
        # Batched pair call, as sentence-transformers (a lone tok(q, "") drops the empty pair).
        z = reference_logit(path, tok([q], [d])["input_ids"][0])
        out.append(1 / (1 + math.exp(-z)) if activation else z)
    return out


def _close(got: list[float], want: list[float]) -> None:
    # Scores (in (0, 1)) to 1e-5; raw logits (up to ~10 here) to 1e-5 of their size, which is
    # float32's summation-order noise over two layers.
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g - w) <= TOL * max(1.0, abs(w)), f"pair {i}: {g} vs reference {w}"


def test_loads_natively_and_matches_the_reference_1_to_n(gte: Path) -> None:
    scorer = Scorer.load(gte)
    assert isinstance(scorer._backend, GteNewBackend)
    got = [r.score for r in scorer.score(QUERIES[0], DOCS)]
    _close(got, _reference(gte, [QUERIES[0]] * len(DOCS), DOCS))
    raw = [r.score for r in scorer.score(QUERIES[0], DOCS, use_activation=False)]
    _close(raw, _reference(gte, [QUERIES[0]] * len(DOCS), DOCS, activation=False))
    assert max(got) - min(got) > 0.05  # the scores differ: the test can fail


def test_n_to_n_and_shuffled_batches_match_the_reference(gte: Path) -> None:
    queries = [QUERIES[i % 2] for i in range(len(DOCS))]
    want = _reference(gte, queries, DOCS)
    scorer = Scorer.load(gte, batch_size=2)
    _close([r.score for r in scorer.score(queries, DOCS)], want)
    order = list(range(len(DOCS)))
    random.Random(3).shuffle(order)
    shuffled = scorer.score([queries[i] for i in order], [DOCS[i] for i in order])
    back = [0.0] * len(DOCS)
    for k, r in enumerate(shuffled):
        back[order[k]] = r.score
    _close(back, want)


@pytest.mark.parametrize(
    "scaling", [None, {"type": "ntk", "factor": 2.0, "mixed_b": 0.8}], ids=["plain", "mixed"]
)
def test_other_rotary_scalings_match_the_reference(gte_dir: Path, scaling: dict | None) -> None:
    name = "plain" if scaling is None else "mixed"
    path = build_gte_new(gte_dir / name, rope_scaling=scaling, seed=11)
    got = [r.score for r in Scorer.load(path).score(QUERIES[1], DOCS[:3])]
    _close(got, _reference(path, [QUERIES[1]] * 3, DOCS[:3]))


def test_rotary_positions_matter(gte_dir: Path) -> None:
    """Guards the test itself: NTK scaling changes the frequencies, so a wrong one would fail."""
    plain = rotary_inv_freq(8, 20000.0)
    ntk = rotary_inv_freq(8, 20000.0, {"type": "ntk", "factor": 8.0})
    assert not torch.allclose(plain, ntk)


def test_vllm_architecture_override_is_accepted(gte: Path) -> None:
    vllm_style = Scorer.load(
        gte, hf_overrides={"architectures": ["GteNewForSequenceClassification"]}
    )
    plain = Scorer.load(gte)
    assert [r.score for r in vllm_style.score(QUERIES[0], DOCS[:2])] == [
        r.score for r in plain.score(QUERIES[0], DOCS[:2])
    ]
    with pytest.raises(InputError, match="only 'architectures'"):
        Scorer.load(gte, hf_overrides={"classifier_from_token": ["no", "yes"]})


def test_missing_weights_are_an_error_not_random_values(gte: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(gte, broken)
    sd = load_file(str(gte / "model.safetensors"))
    del sd["new.encoder.layer.1.mlp.up_gate_proj.weight"]
    save_file(sd, str(broken / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="up_gate_proj"):
        Scorer.load(broken)


@pytest.mark.parametrize(
    ("key", "value"),
    [("layer_norm_type", "rms_norm"), ("rotary_emb_dim", 4), ("hidden_act", "relu"),
     ("logn_attention_scale", True)],
)
def test_unsupported_variants_are_refused(gte: Path, tmp_path: Path, key: str,
                                          value: object) -> None:
    odd = tmp_path / "odd"
    shutil.copytree(gte, odd)
    config = json.loads((odd / "config.json").read_text())
    config[key] = value
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedScoreType, match=key):
        Scorer.load(odd)


def test_lora_adapter_on_gte_matches_the_merged_model(gte: Path, tmp_path: Path) -> None:
    """PEFT names of the published model (new.encoder.layer.N.attention.qkv_proj, ...) apply."""
    from tests.lora_models import merge_adapter, write_adapter

    adapter = write_adapter(tmp_path / "a", gte, targets=["qkv_proj", "up_gate_proj"],
                            modules_to_save=["classifier"], seed=3)
    merged = merge_adapter(gte, adapter, tmp_path / "merged")
    got = [r.score for r in Scorer.load(gte, lora=str(adapter)).score(QUERIES[0], DOCS)]
    want = [r.score for r in Scorer.load(merged).score(QUERIES[0], DOCS)]
    # Not 1e-5: a random adapter on this random NTK-scaled GTE drives logits to ±20, and the
    # unmerged update x·W + s·(x·A)·B rounds differently from the merged W'. Measured against a
    # float64 evaluation of the merged model: LoRA path 1.8e-5 worst (pair 3), merged 1.1e-6.
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 5e-5, (got, want)
    base = [r.score for r in Scorer.load(gte).score(QUERIES[0], DOCS)]
    assert max(abs(a - b) for a, b in zip(got, base, strict=True)) > 1e-3
