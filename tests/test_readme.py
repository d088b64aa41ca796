"""Every ```python block of README.md runs as written, each in a fresh namespace.

A block may name a placeholder (a model path the reader replaces with their own, or a server
URL); the test swaps it for a tiny offline fixture, by this table and nothing else:

| in README.md                    | replaced by                                                    |
|---------------------------------|----------------------------------------------------------------|
| "path/to/model"                 | tiny random BERT cross-encoder (``bert_ce``, tests/conftest)   |
| "path/to/reranker"              | the same tiny cross-encoder                                    |
| "path/to/Qwen3-Reranker-0.6B"   | tiny random Qwen3 causal LM, as the original reranker ships    |
|                                 | (``tests.llm_models.build_causal_lm``); context raised to 1024 |
|                                 | tokens (rotary: no weight changes) so the block's              |
|                                 | ``max_tokens_per_doc=512`` fits, as in the real 32k-token one  |
| "path/to/lora-adapter"          | a tiny PEFT LoRA adapter of that cross-encoder                 |
|                                 | (``tests.lora_models.write_adapter``)                          |
| "http://localhost:8000"         | ``scorer serve``'s app over the tiny cross-encoder, in-process |
|                                 | on a free loopback port (``tests.test_server.ServerThread``)   |

Anything else runs unchanged: ``Scorer.load()`` with no model and ``ScorerEmbeddings()`` /
``ScorerEmbedding()`` load the real bundled all-MiniLM-L6-v2. A ``path/to/`` string that is
not in the table fails the test, so a new placeholder must be added here on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    """(line number, source) of each ```python block."""
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def qwen3_causal_lm(model_dir: Path) -> Path:
    import json

    from tests.llm_models import build_causal_lm

    folder = build_causal_lm(model_dir / "readme_qwen3", "qwen3", seed=1, tie=True)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 1024  # the tokenizer's own limit
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def server_url(bert_ce: Path) -> Iterator[str]:
    from engine import Scorer
    from engine.server import ServerConfig, create_app
    from tests.test_server import ServerThread

    app = create_app(Scorer.load(bert_ce), ServerConfig(served_model_name="tiny-ce"))
    with ServerThread(app) as running:
        yield running.url


@pytest.fixture(scope="module")
def lora_adapter(bert_ce: Path, model_dir: Path) -> Path:
    from tests.lora_models import write_adapter

    return write_adapter(model_dir / "readme_lora", bert_ce, targets=["query", "value"], seed=2)


@pytest.fixture(scope="module")
def substitutions(bert_ce: Path, qwen3_causal_lm: Path, server_url: str,
                  lora_adapter: Path) -> dict[str, str]:
    return {
        '"path/to/lora-adapter"': repr(str(lora_adapter)),
        '"path/to/model"': repr(str(bert_ce)),
        '"path/to/reranker"': repr(str(bert_ce)),
        '"path/to/Qwen3-Reranker-0.6B"': repr(str(qwen3_causal_lm)),
        '"http://localhost:8000"': repr(server_url),
    }


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 6, "README.md lost its examples?"


@pytest.mark.parametrize(("line", "source"), BLOCKS, ids=[f"line{n}" for n, _ in BLOCKS])
def test_readme_block_runs(line: int, source: str, substitutions: dict[str, str],
                           capsys: pytest.CaptureFixture[str]) -> None:
    for placeholder, value in substitutions.items():
        source = source.replace(placeholder, value)
    leftover = re.findall(r"""["']path/to/[^"']*["']""", source)
    assert not leftover, f"README.md:{line} names {leftover}; add it to the table above"
    code = compile(source, f"README.md:{line}", "exec")
    exec(code, {"__name__": "__readme__"})  # a fresh namespace: every block stands alone
    capsys.readouterr()


# -- the demo the quick start names ---------------------------------------------------------------
def _demo_rows(text: str) -> dict[str, list[float]]:
    rows = {}
    for label in ("BM25 order", "MiniLM cosine", "hybrid RRF (k=60)", "hybrid blend (0.5)"):
        match = re.search(re.escape(label) + r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text)
        assert match, f"{label!r} row missing"
        rows[label] = [float(g) for g in match.groups()]
    return rows


@pytest.mark.slow
def test_make_demo_prints_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m engine.demo` (what `make demo` runs) matches the table README.md shows."""
    from engine.demo import main

    assert main(["--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "scoring" not in err  # no progress bar when stderr is not a terminal
    got = _demo_rows(out)
    shown = _demo_rows(README.read_text(encoding="utf-8"))
    for label, figures in shown.items():
        # bfloat16 (CPUs with AMX / AVX512-BF16) and float32 elsewhere differ in the 3rd digit.
        assert got[label] == pytest.approx(figures, abs=0.01), label
    assert got["BM25 order"] == shown["BM25 order"]  # no model involved: exact
    assert got["hybrid blend (0.5)"][0] > got["BM25 order"][0] + 0.03  # the win it claims
    flat = " ".join(out.split())  # undo the 100-column wrapping
    assert "pairs/s" in flat and "the bundled model is a bi-encoder" in flat
    assert "python -m engine.demo --model path/to/cross-encoder" in flat


def test_demo_with_another_model(bert_ce: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.demo import main

    assert main(["--quiet", "--model", str(bert_ce), "--dtype", "auto"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the 100-column wrapping
    assert "a cross-encoder (reads claim and abstract together)" in out
    assert re.search(r"cross-encoder model\s+[\d.]+", out)
    assert "encoded once" not in out  # a cross-encoder has no document cache
