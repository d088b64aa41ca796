"""Record vLLM's offline ``LLM.score`` on the committed fixtures (run under ``.venv-vllm``).

    .venv-vllm/bin/python -m tests.vllm_reference.record_offline            # every model
    .venv-vllm/bin/python -m tests.vllm_reference.record_offline bert_ce    # a subset

Each model runs in its own child process (vLLM spawns an engine core per ``LLM``; a fresh
process per model keeps memory flat and a crash local) and writes
``tests/golden/vllm/offline/<model>.json``: the ``LLM(...)`` arguments, facts about the loaded
model (max_model_len, pooling task, use_sep_token, ...), vLLM's warnings, and for every case the
call as made and either every field of every ``ScoringRequestOutput`` or the exception (type,
builtin base, message). ``meta.json`` holds the version, ``LLM.score``'s signature and which
``LLM(...)`` engine arguments vLLM accepts.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .texts import DOCS, INSTRUCTION, LONG_DOC, NN_QUERIES, QUERIES, QUERY, SAME_DOCS

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vllm"
GOLDEN = ROOT / "tests" / "golden" / "vllm" / "offline"
TEMPLATES = ROOT / "templates"

# Passed to every LLM(...). dtype: vLLM's "auto" turns a float32 *pooling* checkpoint into
# float16 (config/model.py _resolve_auto_dtype), which no float32 engine can match to 1e-5; see
# the bert_ce_dtype_auto model for what that default gives. enforce_eager: plain eager numerics
# (and faster start); bert_ce_engine_args records the compiled default too.
BASE_KWARGS: dict[str, Any] = {
    "runner": "pooling", "dtype": "float32", "gpu_memory_utilization": 0.12,
    "enforce_eager": True,
}

CROSS = "cross-encoder"
BI = "bi-encoder"
LATE = "late-interaction"

# name -> (fixture, kind, extra LLM kwargs, template name or None)
MODELS: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    "bert_ce": ("bert_ce", CROSS, {}, None),
    "bert_ce_2labels": ("bert_ce_2labels", CROSS, {}, None),
    "roberta_ce": ("roberta_ce", CROSS, {}, None),
    "xlmr_ce": ("xlmr_ce", CROSS, {}, None),
    "modernbert_ce": ("modernbert_ce", CROSS, {}, None),
    "qwen3_reranker": ("qwen3_lm", CROSS, {"hf_overrides": {
        "architectures": ["Qwen3ForSequenceClassification"],
        "classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": True}},
        "qwen3_reranker"),
    "qwen2_mxbai": ("qwen2_lm", CROSS, {"hf_overrides": {
        "architectures": ["Qwen2ForSequenceClassification"],
        "classifier_from_token": ["0", "1"], "method": "from_2_way_softmax"}},
        "mxbai_rerank_v2"),
    "gemma_bge": ("gemma_lm", CROSS, {"hf_overrides": {
        "architectures": ["GemmaForSequenceClassification"],
        "classifier_from_token": ["Yes"], "method": "no_post_processing"}},
        "bge_reranker_v2_gemma"),
    "llama_yes_no": ("llama_lm", CROSS, {"hf_overrides": {
        "architectures": ["LlamaForSequenceClassification"],
        "classifier_from_token": ["no", "yes"], "method": "from_2_way_softmax"}}, "basic"),
    "qwen3_seq_cls": ("qwen3_seq_cls", CROSS, {}, "qwen3_reranker"),
    "nemotron": ("nemotron", CROSS, {"trust_remote_code": True}, "nemotron_rerank"),
    "nemotron_no_remote_code": ("nemotron", CROSS, {}, None),
    "bert_bi": ("bert_bi", BI, {}, None),
    "colbert_ir": ("colbert_ir", LATE, {}, None),
    "pylate": ("pylate", LATE, {}, None),
    "pylate_as_hf_colbert": ("pylate", LATE, {"hf_overrides": {"architectures": ["HF_ColBERT"]}},
                             None),
    "bge_m3_colbert": ("bge_m3", LATE, {
        "hf_overrides": {"architectures": ["BgeM3EmbeddingModel"]},
        "pooler_config": {"task": "token_embed"}}, None),
    "bge_m3_dense": ("bge_m3", BI, {
        "hf_overrides": {"architectures": ["BgeM3EmbeddingModel"]},
        "pooler_config": {"task": "embed"}}, None),
    # Engine arguments that should not change a score, all at once (and torch.compile on).
    "bert_ce_engine_args": ("bert_ce", CROSS, {
        "enforce_eager": False, "seed": 1234, "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1, "max_num_seqs": 8, "max_num_batched_tokens": 4096,
        "enable_prefix_caching": False, "disable_log_stats": True, "tokenizer_mode": "auto",
        "load_format": "auto", "kv_cache_dtype": "auto", "attention_config": {},
        "trust_remote_code": False, "revision": None,
        "max_model_len": 128, "block_size": 16}, None),
    # vLLM's own default dtype: float16 for a float32 pooling checkpoint.
    "bert_ce_dtype_auto": ("bert_ce", CROSS, {"dtype": "auto"}, None),
    # A load-time chat_template: does LLM.score use it when the call gives none?
    "qwen3_reranker_load_template": ("qwen3_lm", CROSS, {
        "hf_overrides": {"architectures": ["Qwen3ForSequenceClassification"],
                         "classifier_from_token": ["no", "yes"],
                         "is_original_qwen3_reranker": True},
        "chat_template": {"$template": "qwen3_reranker"}}, "qwen3_reranker"),
}

# Cut-down case lists for the models that only answer one question.
ONLY = {
    "bert_ce_engine_args": ("1:1", "1:N", "N:N", "over-long"),
    "bert_ce_dtype_auto": ("1:1", "1:N"),
    "qwen3_reranker_load_template": ("1:N", "template/1:N"),
    "nemotron_no_remote_code": ("1:1",),
    # vLLM checks num_labels before anything else; a few calls show that order.
    "bert_ce_2labels": ("1:1", "1:N", "pairing/2 vs 3", "pairing/[] vs []",
                        "multimodal dict as data_1", "over-long", "pooling_params as dict",
                        "tokenization_kwargs truncate_prompt_tokens=8"),
}


def _pp(**fields: Any) -> dict[str, Any]:
    return {"$PoolingParams": fields}


def cases_for(name: str) -> list[dict[str, Any]]:
    """The calls made on one model: {"id", "args": [data_1, data_2], "kwargs"}."""
    _, kind, _, template = MODELS[name]
    c: list[dict[str, Any]] = []

    def add(cid: str, d1: Any, d2: Any, **kwargs: Any) -> None:
        c.append({"id": cid, "args": [d1, d2], "kwargs": {"use_tqdm": False, **kwargs}})

    add("1:1", QUERY, DOCS[0])
    add("1:N", QUERY, DOCS)
    add("N:N", NN_QUERIES, DOCS)
    add("1:1 lists", [QUERY], [DOCS[0]])
    add("1:N use_activation=False", QUERY, DOCS, pooling_params=_pp(use_activation=False))
    add("1:N use_activation=True", QUERY, DOCS, pooling_params=_pp(use_activation=True))
    add("identical documents", QUERY, SAME_DOCS)
    add("empty document", QUERY, "")
    add("pairing/N:1", QUERIES, DOCS[0])
    add("pairing/2 vs 3", QUERIES, DOCS[:3])
    add("pairing/2 vs []", QUERIES, [])
    add("pairing/[] vs []", [], [])
    add("pairing/[] vs 3", [], DOCS[:3])
    add("pairing/1 vs []", QUERY, [])
    add("multimodal dict as data_1", {"content": [{"type": "text", "text": QUERY}]}, DOCS[0])
    add("multimodal dict as data_2", QUERY, {"content": [{"type": "text", "text": DOCS[0]}]})
    add("over-long", QUERY, LONG_DOC)
    add("over-long in a batch", QUERY, [DOCS[0], LONG_DOC])
    add("truncate_prompt_tokens kwarg", QUERY, DOCS, truncate_prompt_tokens=8)
    add("tokenization_kwargs truncate_prompt_tokens=8", QUERY, DOCS,
        tokenization_kwargs={"truncate_prompt_tokens": 8})
    add("tokenization_kwargs truncate_prompt_tokens=8 left", QUERY, DOCS,
        tokenization_kwargs={"truncate_prompt_tokens": 8, "truncation_side": "left"})
    add("tokenization_kwargs truncate_prompt_tokens=-1 over-long", QUERY, LONG_DOC,
        tokenization_kwargs={"truncate_prompt_tokens": -1})
    add("tokenization_kwargs truncation=True over-long", QUERY, LONG_DOC,
        tokenization_kwargs={"truncation": True})
    add("tokenization_kwargs truncation=True max_length=12", QUERY, DOCS,
        tokenization_kwargs={"truncation": True, "max_length": 12})
    add("tokenization_kwargs truncate_prompt_tokens > max_model_len", QUERY, DOCS[0],
        tokenization_kwargs={"truncate_prompt_tokens": 100000})
    add("tokenization_kwargs padding=max_length", QUERY, DOCS[:2],
        tokenization_kwargs={"padding": "max_length"})
    add("tokenization_kwargs unknown key", QUERY, DOCS[0],
        tokenization_kwargs={"return_attention_mask": True})
    add("pooling_params as dict", QUERY, DOCS, pooling_params={"use_activation": False})
    add("extra_kwargs max_tokens_per_doc=3", QUERY, DOCS,
        pooling_params=_pp(extra_kwargs={"max_tokens_per_doc": 3}))
    add("extra_kwargs max_tokens_per_query=2", QUERY, DOCS,
        pooling_params=_pp(extra_kwargs={"max_tokens_per_query": 2}))
    add("extra_kwargs max_tokens_per_doc over-long", QUERY, LONG_DOC,
        pooling_params=_pp(extra_kwargs={"max_tokens_per_doc": 20}))
    add("extra_kwargs max_tokens_per_doc >= max_model_len", QUERY, DOCS,
        pooling_params=_pp(extra_kwargs={"max_tokens_per_doc": 100000}))
    add("extra_kwargs max_tokens_per_doc negative", QUERY, DOCS,
        pooling_params=_pp(extra_kwargs={"max_tokens_per_doc": -1}))
    add("pooling_params dimensions", QUERY, DOCS, pooling_params=_pp(dimensions=4))
    add("pooling_params task mismatch", QUERY, DOCS, pooling_params=_pp(task="token_classify"))
    add("lora_request", QUERY, DOCS[0], lora_request=None)
    if template is not None:
        t = {"$template": template}
        add("template/1:1", QUERY, DOCS[0], chat_template=t)
        add("template/1:N", QUERY, DOCS, chat_template=t)
        add("template/N:N", NN_QUERIES, DOCS, chat_template=t)
        add("template/1:N use_activation=False", QUERY, DOCS, chat_template=t,
            pooling_params=_pp(use_activation=False))
        add("template/identical documents", QUERY, SAME_DOCS, chat_template=t)
        add("template/instruction via extra_kwargs", QUERY, DOCS, chat_template=t,
            pooling_params=_pp(extra_kwargs={"chat_template_kwargs": {
                "instruction": INSTRUCTION}}))
        add("template/reserved chat_template_kwargs", QUERY, DOCS[0], chat_template=t,
            pooling_params=_pp(extra_kwargs={"chat_template_kwargs": {"tokenize": True}}))
        add("template/max_tokens_per_doc=3", QUERY, DOCS, chat_template=t,
            pooling_params=_pp(extra_kwargs={"max_tokens_per_doc": 3}))
        add("template/truncate_prompt_tokens=20", QUERY, DOCS, chat_template=t,
            tokenization_kwargs={"truncate_prompt_tokens": 20})
        add("template/over-long", QUERY, LONG_DOC, chat_template=t)
        add("template/max_tokens_per_doc over-long", QUERY, LONG_DOC, chat_template=t,
            pooling_params=_pp(extra_kwargs={"max_tokens_per_doc": 20}))
        add("template/jinja source given inline", QUERY, DOCS[:2],
            chat_template="{{ messages[0].content }} | {{ messages[1].content }}")
        add("template/broken jinja", QUERY, DOCS[0], chat_template="{% if %}")
    if kind != CROSS:
        add("1:N use_activation=False twice", QUERY, DOCS[:2],
            pooling_params=_pp(use_activation=False))
    if name in ONLY:
        c = [x for x in c if x["id"] in ONLY[name]]
    return c


# -- child: one model -----------------------------------------------------------------------------
def _template_text(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text()


def _resolve(value: Any, templates: dict[str, str]) -> Any:
    from vllm import PoolingParams

    if isinstance(value, dict) and "$template" in value:
        templates[value["$template"]] = _template_text(value["$template"])
        return templates[value["$template"]]
    if isinstance(value, dict) and "$PoolingParams" in value:
        return PoolingParams(**value["$PoolingParams"])
    return value


def _error(exc: BaseException) -> dict[str, Any]:
    builtin = next((k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins"), None)
    return {"type": type(exc).__name__, "module": type(exc).__module__, "builtin_base": builtin,
            "mro": [k.__name__ for k in type(exc).__mro__], "message": str(exc),
            "args0": str(exc.args[0]) if exc.args else ""}


def _output(o: Any, tok: Any) -> dict[str, Any]:
    return {
        "class": type(o).__name__,
        "request_id": o.request_id,
        "score": o.outputs.score,
        "outputs_class": type(o.outputs).__name__,
        "prompt_token_ids": list(o.prompt_token_ids),
        "num_cached_tokens": o.num_cached_tokens,
        "finished": o.finished,
        "error": None if o.error is None else repr(o.error),
        "decoded": tok.decode(list(o.prompt_token_ids)) if tok is not None else None,
        "fields": sorted(vars(o)),
    }


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.seen: set[int] = set()

    def attach(self) -> None:
        """On root and "vllm" both (vLLM re-parents and reconfigures its loggers)."""
        for lg in (logging.getLogger(), logging.getLogger("vllm")):
            if self not in lg.handlers:
                lg.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) in self.seen:
            return
        self.seen.add(id(record))
        msg = record.getMessage()
        if "LD_PRELOAD" in msg or "Triton" in msg or "NUMA" in msg:
            return  # this machine, not the model
        self.lines.append(sanitize(f"{record.levelname} {record.name}: {msg}"))


def _model_facts(llm: Any) -> dict[str, Any]:
    mc = llm.llm_engine.model_config
    hf = mc.hf_config
    return {
        "architecture": mc.architecture,
        "architectures": list(getattr(hf, "architectures", None) or []),
        "max_model_len": mc.max_model_len,
        "dtype": str(mc.dtype),
        "head_dtype": str(getattr(mc, "head_dtype", None)),
        "pooling_task": llm.pooling_task,
        "supported_tasks": list(llm.supported_tasks),
        "num_labels": getattr(hf, "num_labels", None),
        "use_sep_token": mc.use_sep_token,
        "method": getattr(hf.get_text_config(), "method", None),
        "classifier_from_token": getattr(hf, "classifier_from_token", None),
        "pooler_config": repr(mc.pooler_config),
        "tokenizer_class": type(llm.get_tokenizer()).__name__,
        "pad_token_id": llm.get_tokenizer().pad_token_id,
    }


def _prompt_analysis(tok: Any, outputs: list[dict[str, Any]], q: str, docs: list[str]) -> list:
    """How the fed ids relate to the obvious candidate encodings of each pair."""
    rows = []
    for out, d in zip(outputs, docs, strict=True):
        fed = out["prompt_token_ids"]
        rows.append({
            "document": d,
            "fed == tokenizer(q + d)": fed == tok(q + d)["input_ids"],
            "fed == tokenizer(q, d)": fed == tok(q, d)["input_ids"],
            "fed == tokenizer(q) + tokenizer(d) (no specials)":
                fed == tok(q, add_special_tokens=False)["input_ids"]
                + tok(d, add_special_tokens=False)["input_ids"],
            "tokenizer(q + d)": tok(q + d)["input_ids"],
            "tokenizer(q, d)": tok(q, d)["input_ids"],
        })
    return rows


def record_model(name: str) -> dict[str, Any]:
    import vllm
    from vllm import LLM

    fixture, kind, extra, _ = MODELS[name]
    capture = _Capture()
    capture.attach()
    templates: dict[str, str] = {}
    llm_kwargs = {**BASE_KWARGS, **extra}
    resolved = {k: _resolve(v, templates) for k, v in llm_kwargs.items()}
    golden: dict[str, Any] = {
        "vllm_version": vllm.__version__, "model": name, "fixture": fixture, "kind": kind,
        "llm_kwargs": llm_kwargs, "templates": templates,
    }
    started = time.time()
    try:
        llm = LLM(model=str(FIXTURES / fixture), **resolved)
    except Exception as exc:  # the refusal is the finding
        golden["load_error"] = _error(exc)
        golden["load_traceback_tail"] = traceback.format_exc().splitlines()[-6:]
        golden["warnings"] = capture.lines
        golden["cases"] = []
        return golden
    golden["load_seconds"] = round(time.time() - started, 1)
    capture.attach()
    golden["facts"] = _model_facts(llm)
    tok = llm.get_tokenizer()
    cases = []
    for case in cases_for(name):
        args = [_resolve(a, templates) for a in case["args"]]
        kwargs = {k: _resolve(v, templates) for k, v in case["kwargs"].items()}
        entry = dict(case)
        capture.attach()
        before = len(capture.lines)
        try:
            outs = llm.score(*args, **kwargs)
            entry["outputs"] = [_output(o, tok) for o in outs]
        except Exception as exc:
            entry["error"] = _error(exc)
            if type(exc).__name__ == "EngineDeadError":
                entry["note"] = "the engine died; it was rebuilt for the next case"
                del llm
                llm = LLM(model=str(FIXTURES / fixture), **resolved)
        entry["warnings"] = capture.lines[before:]
        cases.append(entry)
    golden["cases"] = cases
    # The prompt vLLM builds for a converted decoder without a template, in detail.
    plain = next((c for c in cases if c["id"] == "1:N" and "outputs" in c), None)
    if kind == CROSS and plain is not None:
        golden["prompt_analysis_1:N"] = _prompt_analysis(tok, plain["outputs"], QUERY, DOCS)
    golden["warnings_at_load"] = [w for w in capture.lines
                                  if not any(w in c["warnings"] for c in cases)]
    return golden


# -- child: engine arguments ----------------------------------------------------------------------
ENGINE_ARGS: dict[str, Any] = {
    "gpu_memory_utilization": 0.12, "enforce_eager": True, "attention_config": {},
    "tensor_parallel_size": 1, "tensor_parallel_size=2": 2, "pipeline_parallel_size": 1,
    "data_parallel_size": 1, "seed": 1234, "max_num_seqs": 8, "max_num_batched_tokens": 4096,
    "enable_prefix_caching": True, "swap_space": 4, "disable_log_stats": True,
    "tokenizer_mode": "auto", "download_dir": "/tmp", "load_format": "auto",
    "kv_cache_dtype": "auto", "block_size": 16, "max_model_len": 64,
    "max_model_len=100000": 100000, "dtype": "bfloat16", "dtype=float16": "float16",
    "dtype=float64": "float64", "quantization": None, "cpu_offload_gb": 0,
    "compilation_config": 0, "distributed_executor_backend": "mp",
    "enable_chunked_prefill": False, "task": "score", "convert": "classify",
    "runner=generate": "generate", "trust_remote_code": True, "revision": None,
    "tokenizer": str(FIXTURES / "bert_ce"), "hf_token": None, "served_model_name": "x",
    "pooler_config": {"use_activation": False}, "device": "cpu", "worker_cls": "auto",
    "not_an_engine_arg": 1, "max_logprobs": 5, "disable_custom_all_reduce": True,
    "enable_lora": False, "max_loras": 1, "logits_processors": None,
    "kv_cache_memory_bytes": 10**8, "override_pooler_config": {"use_activation": False},
}


def record_engine_args() -> dict[str, Any]:
    """Which LLM(...) keyword arguments vLLM takes: EngineArgs(...) + create_engine_config()
    on bert_ce (what LLM.__init__ does before it loads weights, including its conversion of
    compilation_config ints and attention_config dicts), one argument at a time."""
    from vllm.engine.arg_utils import EngineArgs

    model = str(FIXTURES / "bert_ce")
    out = {}
    for label, value in ENGINE_ARGS.items():
        key = label.split("=", 1)[0]
        kwargs = {"model": model, "runner": "pooling", "dtype": "float32", key: value}
        if key == "runner":
            kwargs["runner"] = value
        if key == "dtype":
            kwargs["dtype"] = value
        entry: dict[str, Any] = {"argument": key, "value": value}
        try:
            sig = inspect.signature(__import__("vllm").LLM.__init__)
            entry["named_in_LLM_signature"] = key in sig.parameters
            if key == "compilation_config" and isinstance(value, int):  # as LLM.__init__ does
                from vllm.config import CompilationConfig, CompilationMode

                kwargs[key] = CompilationConfig(mode=CompilationMode(value))
            if key == "attention_config" and isinstance(value, dict):
                from vllm.config import AttentionConfig

                kwargs[key] = AttentionConfig(**value)
            args = EngineArgs(**kwargs)
            config = args.create_engine_config()
            entry["accepted"] = True
            entry["effect"] = {
                "dtype": str(config.model_config.dtype),
                "max_model_len": config.model_config.max_model_len,
                "runner": config.model_config.runner_type,
                "pooler_use_activation": config.model_config.pooler_config.use_activation,
            }
        except Exception as exc:
            entry["accepted"] = False
            entry["error"] = _error(exc)
        out[label] = entry
    return out


def record_meta() -> dict[str, Any]:
    import torch
    import transformers
    import vllm
    from vllm import LLM, PoolingParams
    from vllm.outputs import ScoringOutput, ScoringRequestOutput

    def sig(fn: Any) -> list[dict[str, Any]]:
        rows = []
        for p in inspect.signature(fn).parameters.values():
            default = None if p.default is inspect.Parameter.empty else repr(p.default)
            rows.append({"name": p.name, "kind": p.kind.name, "default": default,
                         "has_default": p.default is not inspect.Parameter.empty})
        return rows

    return {
        "vllm_version": vllm.__version__, "torch": torch.__version__,
        "transformers": transformers.__version__, "python": sys.version.split()[0],
        "recorded_at": time.strftime("%Y-%m-%d"),
        "base_llm_kwargs": BASE_KWARGS,
        "LLM.score": sig(LLM.score),
        "LLM.__init__": sig(LLM.__init__),
        "PoolingParams_fields": list(PoolingParams.__struct_fields__),
        "ScoringRequestOutput_init": sig(ScoringRequestOutput.__init__),
        "ScoringOutput_fields": [f for f in ScoringOutput.__dataclass_fields__]
        if hasattr(ScoringOutput, "__dataclass_fields__") else None,
        "engine_args": record_engine_args(),
    }


NOISE = ("LD_PRELOAD", "Triton", "NUMA", "SSM cache", "Enforce eager", "Inductor compilation",
         "[shutdown]", "FutureWarning", "reduce_op", "Model Runner V2")


def log_warnings(log: Path) -> list[str]:
    """vLLM's WARNING/ERROR lines about the model (machine and shutdown noise dropped)."""
    import re

    out = []
    for line in log.read_text(errors="replace").splitlines():
        if (" WARNING " in line or " ERROR " in line) and not any(n in line for n in NOISE):
            text = re.sub(r"^\(\S+ pid=\d+\) (WARNING|ERROR) [\d-]+ [\d:]+ ", r"\1 ", line)
            body = text.split("] ", 1)[-1]
            if body.startswith((" ", "Traceback", "^")):  # keep a traceback's last line only
                continue
            text = sanitize(text)
            if text not in out:
                out.append(text)
    return out


def sanitize(text: str) -> str:
    """Repository paths as seen from its root, so golden files do not depend on the checkout."""
    return text.replace(f"{ROOT}/", "").replace(str(ROOT), ".")


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sanitize(json.dumps(obj, indent=1, ensure_ascii=False)) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Record vLLM's offline LLM.score.")
    p.add_argument("names", nargs="*", help=f"subset of {list(MODELS)} or 'meta'")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child:
        (name,) = args.names
        if name == "meta":
            _write(GOLDEN / "meta.json", record_meta())
        else:
            _write(GOLDEN / f"{name}.json", record_model(name))
        return 0
    names = args.names or ["meta", *MODELS]
    failed = []
    for name in names:
        started = time.time()
        log = ROOT / "build" / "vllm_reference_logs" / f"offline_{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as fh:
            rc = subprocess.call(
                [sys.executable, "-m", "tests.vllm_reference.record_offline", "--child", name],
                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=900)
        print(f"offline {name}: rc={rc} in {time.time() - started:.0f}s (log {log})", flush=True)
        out = GOLDEN / f"{name}.json"
        if name != "meta" and out.exists():  # warnings printed while loading, from the log
            golden = json.loads(out.read_text())
            golden["log_warnings"] = log_warnings(log)
            _write(out, golden)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
