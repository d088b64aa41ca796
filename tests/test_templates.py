"""Score templates: golden renders of every bundled template, the sandbox, and name lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import TemplateError
from engine._resources import templates_dir
from engine.templates import (
    RESERVED_TEMPLATE_KWARGS,
    ScoreTemplate,
    bundled_templates,
    load_template,
    score_messages,
)

QUERY = "What is the capital of France?"
DOCUMENT = "Paris is the capital of France."
INSTRUCTION = "Find the passage that answers the question"

QWEN3_SYSTEM = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
)
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)
GEMMA_TASK = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'."
)

# (template, kwargs) -> the exact prompt, written out by hand from each model card's format.
GOLDEN: dict[tuple[str, bool], str] = {
    ("qwen3_reranker", False): (
        QWEN3_SYSTEM + "<|im_start|>user\n"
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
        "<Query>: What is the capital of France?\n"
        "<Document>: Paris is the capital of France.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ),
    ("qwen3_reranker", True): (
        QWEN3_SYSTEM + "<|im_start|>user\n"
        "<Instruct>: Find the passage that answers the question\n"
        "<Query>: What is the capital of France?\n"
        "<Document>: Paris is the capital of France.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ),
    ("qwen3_vl_reranker", False): (
        QWEN3_SYSTEM + "<|im_start|>user\n"
        "<Instruct>: Given a search query, retrieve relevant candidates that answer the query."
        "<Query>:What is the capital of France?\n"
        "<Document>:Paris is the capital of France.<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    ("qwen3_vl_reranker", True): (
        QWEN3_SYSTEM + "<|im_start|>user\n"
        "<Instruct>: Find the passage that answers the question"
        "<Query>:What is the capital of France?\n"
        "<Document>:Paris is the capital of France.<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    ("bge_reranker_v2_gemma", False): (
        "A: What is the capital of France?\nB: Paris is the capital of France.\n" + GEMMA_TASK
    ),
    ("bge_reranker_v2_gemma", True): (
        "A: What is the capital of France?\nB: Paris is the capital of France.\n"
        "Find the passage that answers the question"
    ),
    ("mxbai_rerank_v2", False): (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\n"
        "query: What is the capital of France?\ndocument: Paris is the capital of France.\n"
        + MXBAI_TASK
        + "<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("mxbai_rerank_v2", True): (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\n"
        "instruction: Find the passage that answers the question\n"
        "query: What is the capital of France?\ndocument: Paris is the capital of France.\n"
        + MXBAI_TASK
        + "<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("nemotron_rerank", False): (
        "question:What is the capital of France? \n \n passage:Paris is the capital of France."
    ),
    (
        "basic",
        False,
    ): "Query: What is the capital of France?\nDocument: Paris is the capital of France.",
}


def test_every_bundled_template_has_a_golden_render() -> None:
    assert set(bundled_templates()) == {
        "basic",
        "bge_reranker_v2_gemma",
        "mxbai_rerank_v2",
        "nemotron_rerank",
        "qwen3_reranker",
        "qwen3_vl_reranker",
    }
    assert {name for name, _ in GOLDEN} == set(bundled_templates())


@pytest.mark.parametrize(("name", "with_instruction"), list(GOLDEN))
def test_golden_render(name: str, with_instruction: bool) -> None:
    template = load_template(name)
    kwargs = {"instruction": INSTRUCTION} if with_instruction else {}
    template.check_kwargs(kwargs)
    assert template.origin == "bundled"
    assert template.render(QUERY, DOCUMENT, **kwargs) == GOLDEN[(name, with_instruction)]


@pytest.mark.parametrize("name", ["qwen3_reranker", "qwen3_vl_reranker"])
def test_qwen_instruction_precedence(name: str) -> None:
    """instruction, then instruct, then a system message, then the default (spec §6)."""
    t = load_template(name)
    compiled_default = t.render(QUERY, DOCUMENT)
    assert "<Instruct>: from-instruct" in t.render(QUERY, DOCUMENT, instruct="from-instruct")
    assert "<Instruct>: first" in t.render(QUERY, DOCUMENT, instruction="first", instruct="second")
    # None / empty counts as unset, as vLLM's default(..., true).
    assert t.render(QUERY, DOCUMENT, instruction=None) == compiled_default
    assert t.render(QUERY, DOCUMENT, instruction="") == compiled_default


def test_templates_read_messages_by_role_not_position(tmp_path: Path) -> None:
    """Every bundled template renders the same when the messages come in the other order."""
    from engine.templates import _compile

    for name in bundled_templates():
        t = load_template(name)
        compiled, _ = _compile(t.source, t.name)
        swapped = list(reversed(score_messages(QUERY, DOCUMENT)))
        assert compiled.render(messages=swapped) == t.render(QUERY, DOCUMENT), name


def test_system_message_is_the_qwen_instruction() -> None:
    from engine.templates import _compile

    t = load_template("qwen3_reranker")
    compiled, _ = _compile(t.source, t.name)
    messages = [{"role": "system", "content": "sys-task"}, *score_messages(QUERY, DOCUMENT)]
    assert "<Instruct>: sys-task\n" in compiled.render(messages=messages)


def test_bundled_names_accept_vllm_hyphen_spelling_and_suffix() -> None:
    a = load_template("bge-reranker-v2-gemma")
    b = load_template("nemotron-rerank.jinja")
    assert a.name == "bge_reranker_v2_gemma" and b.name == "nemotron_rerank"


def test_unknown_name_lists_the_bundled_templates() -> None:
    with pytest.raises(TemplateError) as info:
        load_template("qwen4_reranker")
    message = str(info.value)
    assert "qwen4_reranker" in message
    for name in bundled_templates():
        assert name in message


def test_load_by_file_path_and_inline(tmp_path: Path) -> None:
    path = tmp_path / "mine.jinja"
    path.write_text('Q={{ (messages | selectattr("role", "eq", "query") | first).content }}\n')
    from_file = load_template(path)
    assert from_file.origin == "file"
    assert from_file.render("q1", "d1") == "Q=q1"  # jinja drops the file's last newline, as HF
    assert load_template(str(path)).render("q2", "d2") == "Q=q2"
    inline = load_template("{{ messages[1].content }}|{{ messages[0].content }}")
    assert inline.origin == "inline" and inline.render("q", "d") == "d|q"


def test_bundled_templates_live_in_the_templates_dir() -> None:
    for name in bundled_templates():
        t = load_template(name)
        assert t.source == (templates_dir() / f"{name}.jinja").read_text(encoding="utf-8")


def test_compilation_is_cached() -> None:
    from engine.templates import _compile

    t = load_template("qwen3_reranker")
    assert _compile(t.source, t.name) is _compile(t.source, t.name)


HOSTILE = {
    "python internals": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals via a builtin": "{{ cycler.__init__.__globals__.os.system('echo hi') }}",
    "open a file": "{{ open('/etc/passwd').read() }}",
    "import os": "{% import 'os' as os %}{{ os }}",
    "include a file": "{% include '/etc/passwd' %}",
    "mutate the messages": "{{ messages.append({'role': 'x'}) }}",
    "mutate a dict": "{{ messages[0].update({'content': 'x'}) }}",
    "huge range": "{{ range(10 ** 9) | list | length }}",
    "undefined variable": "{{ qurey }}",
    "format string escape": "{{ '{0.__class__}'.format(messages) }}",
}


@pytest.mark.parametrize("source", list(HOSTILE.values()), ids=list(HOSTILE))
def test_sandbox_refuses_hostile_templates(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        load_template(source).render(QUERY, DOCUMENT)
    assert "failed to render" in str(info.value)


def test_hostile_template_cannot_change_the_callers_data() -> None:
    messages = score_messages(QUERY, DOCUMENT)
    with pytest.raises(TemplateError):
        load_template("{{ messages.append(1) }}").render(QUERY, DOCUMENT)
    assert messages == score_messages(QUERY, DOCUMENT)


def test_syntax_error_is_a_template_error_at_load() -> None:
    with pytest.raises(TemplateError, match="not valid jinja"):
        load_template("{% if %}")


def test_missing_role_is_an_error_not_an_empty_string() -> None:
    # A template that asks for a role the pair doesn't have must fail, not render "".
    t = load_template('{{ (messages | selectattr("role", "eq", "system") | first).content }}')
    with pytest.raises(TemplateError):
        t.render(QUERY, DOCUMENT)


def test_check_kwargs_refuses_reserved_and_unused_keys() -> None:
    with pytest.raises(TemplateError, match="reserved"):
        load_template("qwen3_reranker").check_kwargs({"tokenize": True})
    assert {"messages", "chat_template", "tools", "tokenize"} == RESERVED_TEMPLATE_KWARGS
    with pytest.raises(TemplateError, match="does not use"):
        load_template("nemotron_rerank").check_kwargs({"instruction": "x"})
    load_template("qwen3_reranker").check_kwargs({"instruction": "x", "instruct": "y"})


def test_score_template_is_frozen() -> None:
    t = load_template("basic")
    assert isinstance(t, ScoreTemplate)
    with pytest.raises(AttributeError):
        t.source = "x"  # type: ignore[misc]
