"""The public surface: pinned __all__, framework-free import, templates inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import engine

ROOT = Path(__file__).resolve().parent.parent

# The contract: adding a public name is a deliberate change to this list.
ENGINE_ALL = [
    "CacheInfo",
    "DEFAULT_MODEL",
    "LLM",
    "LoRARequest",
    "LoraAdapterInfo",
    "InputError",
    "InputTooLongError",
    "MediaError",
    "MediaNotSupportedError",
    "MissingDependency",
    "ModelLoadError",
    "NonFiniteScoreError",
    "PairingError",
    "PoolingParams",
    "RemoteScoreError",
    "RemoteScorer",
    "RerankResult",
    "ScoreContent",
    "ScoreResult",
    "ScoreType",
    "ScoreTypeDetectionError",
    "Scorer",
    "ScorerConfig",
    "ScorerError",
    "ScoringOutput",
    "ScoringRequestOutput",
    "TemplateError",
    "UnsupportedScoreType",
    "__version__",
    "blend_scores",
    "default_model_path",
    "rank",
    "reciprocal_rank_fusion",
]


def test_engine_all_is_pinned() -> None:
    assert sorted(engine.__all__) == sorted(ENGINE_ALL)
    for name in engine.__all__:
        assert hasattr(engine, name), name


def test_every_error_derives_from_scorer_error() -> None:
    for name in engine.__all__:
        obj = getattr(engine, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, engine.ScorerError), name


BLOCKER = r"""
import importlib.abc, sys
BLOCKED = ("langchain_core", "langchain_classic", "langchain", "llama_index", "fastapi",
           "uvicorn", "httpx", "sentence_transformers")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for this test: {name}")
        return None
sys.meta_path.insert(0, Block())
"""


def test_engine_works_without_framework_packages(bert_ce: Path) -> None:
    """engine imports and scores with LangChain, LlamaIndex, httpx, FastAPI and ST unavailable."""
    code = BLOCKER + f"""
import engine
assert "torch" not in sys.modules, "import engine must not import torch"
results = engine.Scorer.load({str(bert_ce)!r}).score("a query", ["doc one", "doc two"])
assert len(results) == 2 and all(isinstance(r.score, float) for r in results)
leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
assert not leaked, leaked
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_templates_dir_is_found() -> None:
    from engine._resources import templates_dir

    assert (templates_dir() / "README.md").is_file()


@pytest.mark.slow
def test_wheel_ships_templates_and_data(tmp_path: Path) -> None:
    """Build the wheel and check templates/ and SciFact mini are inside, where the code looks."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("scorer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p for p in (ROOT / "templates").iterdir() if p.is_file())
    assert templates
    for p in templates:
        assert f"engine/templates/{p.name}" in names, p.name
    assert "engine/datasets/scifact_mini/corpus.jsonl" in names
    assert "engine/datasets/scifact_mini/NOTICE.md" in names
    assert "engine/datasets/scifact_mini/bm25_top20.tsv" in names  # the demo's first stage
    assert "engine/py.typed" in names
    # And the installed layout resolves: unpack and ask engine._resources from there.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (f"import sys; sys.path.insert(0, {str(target)!r}); import engine._resources as r; "
            "print(r.templates_dir())")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
    assert found.stdout.strip() == str(target / "engine" / "templates"), found.stderr
