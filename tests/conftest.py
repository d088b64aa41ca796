"""Session fixtures: tiny random checkpoints built once, offline, loaded through real code."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests import models as builders  # noqa: E402

QUERIES = ["what is the capital of france?", "vitamin c and scurvy"]
DOCUMENTS = [
    "paris is the capital and largest city of france",
    "berlin is in germany",
    "sailors got scurvy from a lack of vitamin c",
    "",
    "the quick brown fox jumps over the lazy dog " * 3,
    "bm25 is a ranking function",
]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def minilm() -> Path:
    return builders.minilm_path()


@pytest.fixture(scope="session")
def bert_ce(model_dir: Path) -> Path:
    return builders.build_cross_encoder(model_dir / "bert_ce", "bert")


@pytest.fixture(scope="session")
def bert_ce_2labels(model_dir: Path) -> Path:
    return builders.build_cross_encoder(model_dir / "bert_ce2", "bert", num_labels=2)


@pytest.fixture(scope="session")
def roberta_ce(model_dir: Path) -> Path:
    return builders.build_cross_encoder(model_dir / "roberta_ce", "roberta")


@pytest.fixture(scope="session")
def xlmr_ce(model_dir: Path) -> Path:
    return builders.build_cross_encoder(model_dir / "xlmr_ce", "xlmr")


@pytest.fixture(scope="session")
def bert_encoder(model_dir: Path) -> Path:
    return builders.build_bert_encoder(model_dir / "bert_encoder")


@pytest.fixture(scope="session")
def st_bi_encoder(model_dir: Path, bert_encoder: Path) -> Path:
    return builders.build_st_bi_encoder(model_dir / "st_bi", bert_encoder)


@pytest.fixture(scope="session")
def legacy_bi_encoder(model_dir: Path, bert_encoder: Path) -> Path:
    return builders.build_legacy_st_bi_encoder(model_dir / "legacy_bi", bert_encoder)


@pytest.fixture(scope="session")
def colbert_ir(model_dir: Path, bert_encoder: Path) -> Path:
    return builders.build_colbert_ir(model_dir / "colbert_ir", bert_encoder)


@pytest.fixture(scope="session")
def pylate(model_dir: Path, bert_encoder: Path) -> Path:
    return builders.build_pylate(model_dir / "pylate", bert_encoder)


@pytest.fixture(scope="session")
def bge_m3(model_dir: Path) -> Path:
    return builders.build_bge_m3(model_dir / "bge_m3")


@pytest.fixture(scope="session")
def qwen3_llm_reranker(model_dir: Path) -> Path:
    """A tiny Qwen3 reranker converted to Qwen3ForSequenceClassification (loads as it is)."""
    from tests.llm_models import build_causal_lm, convert_to_seq_cls

    lm = build_causal_lm(model_dir / "qwen3_lm", "qwen3", seed=1, tie=True)
    return convert_to_seq_cls(lm, model_dir / "qwen3_seq_cls", ["no", "yes"])


# Property tests (tests/test_properties.py): a bounded, reproducible run by default;
# `pytest --hypothesis-profile=long` for thousands of examples.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "default", max_examples=8, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("default")
