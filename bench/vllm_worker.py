"""vLLM's CPU build as a benchmark contender: a worker process run under ``.venv-vllm``.

``bench/contenders.py`` starts it (``.venv-vllm/bin/python -m bench.vllm_worker``) and talks to it
over stdin/stdout, one JSON object a line, so vLLM (its own venv: its transformers pin differs
from ours) runs alternately with the other contenders of a benchmark, in time if not in process:

    {"cmd": "load", "model": PATH, "dtype": "float32", "kwargs": {...}}  → {"ok": true, ...}
    {"cmd": "score", "queries": [...], "documents": [...]}               → {"scores": [...]}
    {"cmd": "quit"}

vLLM's own log lines go to stderr (the parent sends them to a log file). Not a test; not imported
by the engine.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _reply(out: Any, **fields: Any) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Keep the protocol on the real stdout; anything vLLM prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    llm: Any = None
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "load":
                import vllm
                from vllm import LLM

                started = time.perf_counter()
                kwargs = {"runner": "pooling", "gpu_memory_utilization": 0.12,
                          "enforce_eager": True, **msg.get("kwargs", {})}
                llm = LLM(model=msg["model"], dtype=msg.get("dtype", "float32"), **kwargs)
                _reply(out, ok=True, version=vllm.__version__,
                       load_s=round(time.perf_counter() - started, 1))
            elif msg["cmd"] == "score":
                # Pairs over the model's limit are cut (vLLM refuses them otherwise), from the
                # right, by vLLM's own rule; sentence-transformers and ours cut the document.
                limit = llm.llm_engine.model_config.max_model_len
                outs = llm.score(msg["queries"], msg["documents"], use_tqdm=False,
                                 tokenization_kwargs={"truncate_prompt_tokens": limit})
                _reply(out, scores=[float(o.outputs.score) for o in outs])
            elif msg["cmd"] == "quit":
                _reply(out, ok=True)
                return 0
            else:
                _reply(out, error=f"unknown command {msg['cmd']!r}")
        except Exception as exc:  # reported to the parent, which decides
            _reply(out, error=f"{type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
