"""Every cookbook runs end to end in a real Jupyter kernel, and its committed outputs are current.

Each notebook is executed with nbclient (an ipykernel of this interpreter, offline) under a
wall-clock cap, and its outputs are checked from outside: no cell raised, nothing printed a
warning a reader would trip over (tqdm's "IProgress not found", a traceback on stderr), every
notebook shows a plot or a table, and the figures it prints are in the expected range. User
cells hold no ``assert``: the checks live here.

Regenerate the committed outputs after editing a notebook (about a minute on 2 cores):

    python -m tests.test_cookbooks --write            # all notebooks
    python -m tests.test_cookbooks --write 03_remote  # the ones whose name contains "03_remote"
"""

from __future__ import annotations

import ast
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COOKBOOKS = ROOT / "cookbooks"
NOTEBOOKS = sorted(COOKBOOKS.glob("*.ipynb"))
CAP_S = 600  # per notebook, start-up included: a guard against hangs, not a speed test

# What a reader must never see in an output.
FORBIDDEN = ("IProgress not found", "TqdmWarning", "Traceback (most recent call last)",
             "Warning:", "WARNING", "WIDGET:")


def _number(text: str, label: str) -> float:
    """The first number after ``label`` in ``text`` (a printed table row)."""
    match = re.search(re.escape(label) + r"\s+(-?\d+(?:\.\d+)?(?:e-?\d+)?)", text)
    assert match, f"{label!r} not found in the notebook's output"
    return float(match.group(1))


def _check_langchain(out: str) -> None:
    bm25 = _number(out, "BM25 alone")
    assert abs(bm25 - 0.7163) < 0.005, bm25  # the shipped BM25 order, no model involved
    assert abs(_number(out, "BM25 -> MiniLM") - 0.720) < 0.02
    assert _number(out, "BM25 -> hybrid blend") > bm25 + 0.03
    assert _number(out, "BM25 -> hybrid RRF") > bm25


def _check_llamaindex(out: str) -> None:
    bm25 = _number(out, "BM25 alone")
    assert abs(bm25 - 0.7163) < 0.005, bm25
    assert abs(_number(out, "BM25 -> MiniLM") - 0.720) < 0.02
    assert _number(out, "BM25 -> hybrid blend") > bm25 + 0.03
    assert "MockLLM's answer starts:" in out


def _check_remote(out: str) -> None:
    for label in ("engine.Scorer vs RemoteScorer: max |diff|",
                  "LangChain local vs remote: max |diff|",
                  "LlamaIndex local vs remote: max |diff|",
                  "server with truncate_prompt_tokens=-1 vs local: max |diff|"):
        assert _number(out, label) < 1e-5, label
    assert "refused: This model's maximum context length is 256 tokens" in out
    assert "truncated locally: [True, True, True]" in out
    assert "server stopped" in out


def _check_score_types(out: str) -> None:
    assert abs(_number(out, "bi-encoder (cosine)") - 0.720) < 0.02
    assert 0.6 < _number(out, "late interaction (MaxSim)") < 0.85
    assert _number(out, "hybrid: BM25 + bi-encoder blend") > 0.74
    assert "random head: speed only" in out


def _check_llm(out: str) -> None:
    assert "<|im_start|>system" in out  # the rendered Qwen3 template
    assert _number(out, "hf_overrides vs converted checkpoint: max |diff|") < 1e-4


CHECKS: dict[str, Callable[[str], None]] = {
    "01_langchain_rag": _check_langchain,
    "02_llamaindex_query_engine": _check_llamaindex,
    "03_remote_mode": _check_remote,
    "04_score_types": _check_score_types,
    "05_llm_rerankers_and_templates": _check_llm,
}


def execute(path: Path, *, cap_s: float = CAP_S) -> tuple[Any, float]:
    """Run ``path`` top to bottom in a fresh kernel; the executed notebook and its seconds."""
    import nbformat
    from nbclient import NotebookClient

    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)  # the kernel inherits this environment
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    deadline = start + cap_s

    def remaining(_cell: Any) -> int:
        return max(1, int(deadline - time.perf_counter()))

    NotebookClient(
        nb, kernel_name="python3", timeout_func=remaining, allow_errors=False,
        resources={"metadata": {"path": str(COOKBOOKS)}}, record_timing=False,
    ).execute()
    return nb, time.perf_counter() - start


def _texts(nb: Any) -> tuple[str, list[str], int]:
    """(all stream and text/plain output, stderr chunks, number of images and tables)."""
    out, stderr, visuals = [], [], 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                (stderr if o["name"] == "stderr" else out).append(o["text"])
            elif o["output_type"] in ("execute_result", "display_data"):
                data = o.get("data", {})
                if "application/vnd.jupyter.widget-view+json" in data:  # blank outside Jupyter
                    out.append("WIDGET: a progress bar or widget in the saved outputs")
                visuals += "image/png" in data or "text/markdown" in data
                out.append(data.get("text/plain", ""))
            elif o["output_type"] == "error":
                out.append("\n".join(o.get("traceback", [])))
    text = "".join(out)
    visuals += len(re.findall(r"^\S.*\n(?:.*\d\.\d{3}.*\n){2,}", text, re.MULTILINE))  # tables
    return text, stderr, visuals


def _user_code_asserts(nb: Any) -> list[int]:
    hits = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            if any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
                hits.append(number)
    return hits


def test_every_cookbook_has_a_check() -> None:
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(CHECKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_with_outputs_and_no_asserts(notebook: Path) -> None:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("outputs") for c in code), "commit the notebook with its outputs"
    assert all(c.get("execution_count") for c in code), "run every cell before committing"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "outputs from a top-to-bottom run only"
    assert not _user_code_asserts(nb), "no assert in user cells; checks go in this test"
    text, stderr, visuals = _texts(nb)
    CHECKS[notebook.stem](text)  # the committed figures are in range too
    assert visuals, "at least one plot or table"
    for bad in FORBIDDEN:
        assert bad not in text and not any(bad in s for s in stderr), bad


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_cookbook_runs_in_a_kernel(notebook: Path) -> None:
    nb, seconds = execute(notebook)
    text, stderr, visuals = _texts(nb)
    for bad in FORBIDDEN:
        assert bad not in text, f"{bad!r} in the outputs"
        assert not any(bad in s for s in stderr), f"{bad!r} on stderr: {stderr}"
    assert visuals, "at least one plot or table"
    CHECKS[notebook.stem](text)
    assert seconds < CAP_S


def main(argv: list[str]) -> int:
    """``--write [NAME...]``: execute notebooks and save them with their outputs."""
    import nbformat

    if not argv or argv[0] != "--write":
        print(__doc__)
        return 2
    wanted = argv[1:]
    for path in NOTEBOOKS:
        if wanted and not any(w in path.stem for w in wanted):
            continue
        nb, seconds = execute(path, cap_s=600)
        nbformat.write(nb, path)
        print(f"{path.name}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
