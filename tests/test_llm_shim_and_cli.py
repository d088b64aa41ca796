"""The vLLM-compatible LLM shim and the ``scorer`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import LLM, InputError, InputTooLongError, PoolingParams, Scorer
from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_seed_example_runs_unchanged(bert_ce: Path) -> None:
    llm = LLM(model=str(bert_ce), runner="pooling")
    (output,) = llm.score("What is the capital of France?", "The capital of France is Paris.")
    expected = Scorer.load(bert_ce).score(
        "What is the capital of France?", "The capital of France is Paris.")[0].score
    assert output.outputs.score == expected


def test_shim_pairs_and_pooling_params(bert_ce: Path) -> None:
    llm = LLM(model=str(bert_ce), runner="pooling", gpu_memory_utilization=0.9)
    outputs = llm.score("q", ["a", "b", "c"], use_tqdm=False)
    assert len(outputs) == 3 and [o.request_id for o in outputs] == ["0", "1", "2"]
    assert all(o.prompt_token_ids and o.finished and o.error is None for o in outputs)
    raw = llm.score("q", ["a"], pooling_params=PoolingParams(use_activation=False),
                    use_tqdm=False)
    expected = Scorer.load(bert_ce).score("q", "a", use_activation=False)[0].score
    assert raw[0].outputs.score == expected
    with pytest.raises(InputError, match="Input lengths must be either 1:1, 1:N or N:N"):
        llm.score(["q1", "q2"], ["a", "b", "c"])
    with pytest.raises(InputError, match="must be a PoolingParams"):
        llm.score("q", "a", pooling_params={"use_activation": False})  # type: ignore[arg-type]


def test_shim_takes_vllm_arguments_and_refuses_the_rest(bert_ce: Path) -> None:
    assert LLM(model=str(bert_ce), convert="embed").scorer.score_type.value == "bi-encoder"
    assert LLM(model=str(bert_ce), pooler_config={"task": "embed"}).scorer.score_type.value \
        == "bi-encoder"
    LLM(model=str(bert_ce), enforce_eager=True, seed=3, attention_config={}, block_size=16)
    with pytest.raises(InputError, match="runner"):
        LLM(model=str(bert_ce), runner="generate")
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_an_arg'"):
        LLM(model=str(bert_ce), not_an_arg=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'task'"):
        LLM(model=str(bert_ce), task="embed")  # vLLM 0.32 has no `task` argument
    with pytest.raises(InputError, match="tensor_parallel_size"):
        LLM(model=str(bert_ce), tensor_parallel_size=2)


def test_shim_refuses_over_long_input_as_vllm(bert_ce: Path) -> None:
    llm = LLM(model=str(bert_ce), max_model_len=16)
    with pytest.raises(InputTooLongError, match="maximum context length is 16 tokens"):
        llm.score("q", "a " * 40, use_tqdm=False)
    (cut,) = llm.score("q", "a " * 40, tokenization_kwargs={"truncation": True}, use_tqdm=False)
    assert len(cut.prompt_token_ids) == 16


def test_cli_rerank_table_and_json(bert_ce: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("paris is the capital\n\nberlin is a city\nscurvy\n")
    assert main(["rerank", "--query", "capital of france", "--model", str(bert_ce),
                 "--top-n", "2", str(docs)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "index", "score"] and len(lines) == 3
    assert "skipped 1 blank line" in err
    assert main(["rerank", "-q", "capital of france", "-m", str(bert_ce), "--json", str(docs)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Scorer.load(bert_ce).rerank(
        "capital of france", ["paris is the capital", "berlin is a city", "scurvy"])
    assert [(r["index"], r["score"]) for r in rows] == [(e.index, e.score) for e in expected]
    assert [r["line"] for r in rows] == [[1, 3, 4][e.index] for e in expected]


def test_cli_jsonl_documents_keep_their_fields(bert_ce: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "paris"}\n{"id": "b", "text": "berlin"}\n')
    assert main(["rerank", "-q", "capital", "-m", str(bert_ce), "--json", str(docs)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["id"] for r in rows) == ["a", "b"]


def test_cli_score_pairs(bert_ce: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("q1\tdoc one\nq2\tdoc two\n")
    assert main(["score", "-m", str(bert_ce), "--json", str(pairs)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Scorer.load(bert_ce).score(["q1", "q2"], ["doc one", "doc two"])
    assert [r["score"] for r in rows] == [e.score for e in expected]


def test_cli_errors_are_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("a\n")
    assert main(["rerank", "-q", "x", "-m", str(tmp_path / "missing"), str(docs)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_uses_bundled_model_by_default() -> None:
    """The installed ``scorer`` command, stdin input, no --model: the bundled MiniLM."""
    exe = Path(sys.executable).with_name("scorer")
    assert exe.exists(), "the scorer console script is not installed in this environment"
    out = subprocess.run(
        [str(exe), "rerank", "--query", "a cat sits", "--json", "-"],
        input="stock market crash\na cat is sitting on the mat\n", capture_output=True,
        text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.splitlines()[0])
    assert first["text"] == "a cat is sitting on the mat"


def test_sentence_transformers_max_seq_length_is_max_model_len() -> None:
    """vLLM takes sentence_bert_config.json's max_seq_length over the position table: 256 for
    the bundled all-MiniLM-L6-v2 (512 positions), so a 257-token text is refused on its
    surfaces, and truncate_prompt_tokens=-1 cuts where Scorer cuts."""
    from engine import default_model_path

    llm = LLM(default_model_path())
    assert llm.scorer.max_model_len == 256 == llm.scorer.max_length
    long = "scurvy " * 300
    with pytest.raises(InputTooLongError, match="maximum context length is 256 tokens"):
        llm.score("q", long, use_tqdm=False)
    cut = llm.score("q", long, use_tqdm=False,
                    tokenization_kwargs={"truncate_prompt_tokens": -1})[0].outputs.score
    assert abs(cut - Scorer.load().score("q", long)[0].score) <= 1e-6


# -- first impressions of the CLI (issue 15) -------------------------------------------------------
def test_cli_version_and_help_lines(capsys: pytest.CaptureFixture[str]) -> None:
    import engine

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"scorer {engine.__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "serve a model over HTTP with vLLM's API" in top
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "pairs as query<TAB>document" in " ".join(capsys.readouterr().out.split())


def test_cli_score_pairs_table_shows_both_columns(
    bert_ce: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("what is bm25?\ta ranking function\ncapital of france?\tparis\n")
    assert main(["score", "-m", str(bert_ce), "--quiet", str(pairs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["index", "score", "query", "document"]
    assert "what is bm25?" in lines[1] and "a ranking function" in lines[1]
    assert "capital of france?" in lines[2] and "paris" in lines[2]


@pytest.mark.parametrize("content", [None, "{not json\n", "[1, 2]\n"])
def test_cli_bad_input_files_end_in_one_clean_line(
    bert_ce: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as done:
        main(["score", "-m", str(bert_ce), str(path)])
    message = str(done.value.code)
    assert message.startswith("scorer: ") and "Traceback" not in message
    assert ("no such file" in message) if content is None else (f"line 1 of {path}" in message)


def test_cli_reading_a_terminal_says_so(bert_ce: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("paris\nberlin\n"))
    assert main(["rerank", "-q", "capital of france", "-m", str(bert_ce)]) == 0
    captured = capsys.readouterr()
    assert "reading from the terminal" in captured.err and "Ctrl-D" in captured.err
    assert "paris" in captured.out


def test_a_causal_lm_without_hf_overrides_hears_of_them(tmp_path: Path) -> None:
    from engine import ScorerError
    from tests.llm_models import build_causal_lm

    folder = build_causal_lm(tmp_path / "qwen3", "qwen3", seed=1, tie=True)
    with pytest.raises(ScorerError) as raised:
        Scorer.load(folder)
    message = str(raised.value)
    assert "hf_overrides" in message and "classifier_from_token" in message
    assert "Qwen3ForSequenceClassification" in message


def test_result_reprs_are_short(bert_ce: Path) -> None:
    long = "word " * 400
    ranked = Scorer.load(bert_ce).rerank("q", [long, "short"])
    shown = repr(ranked)
    assert len(shown) < 400 and "…" in shown and "'short'" in shown
    assert "prompt_token_ids" not in repr(Scorer.load(bert_ce).score("q", long)[0])
