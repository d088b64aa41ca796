"""Contenders that live in venvs of their own: vLLM's CPU build (and its server), infinity-emb.

Each is optional: :func:`vllm_python` / :func:`infinity_python` return None with the reason when
the venv is absent (``make vllm-venv`` / ``make infinity-venv`` build them), and the benchmarks
print that reason and skip the row.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VLLM_VENV = ROOT / ".venv-vllm"
INFINITY_VENV = ROOT / ".venv-infinity"
LOGS = ROOT / "build" / "bench_logs"

__all__ = ["VllmScorer", "infinity_python", "vllm_python"]


def _python(venv: Path, module: str, make_target: str) -> tuple[Path | None, str]:
    python = venv / "bin" / "python"
    if not python.is_file():
        return None, f"{venv.name} not found (build it with `make {make_target}`)"
    check = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                           text=True, timeout=300)
    if check.returncode:
        return None, f"{venv.name} cannot import {module}: {check.stderr.strip()[-300:]}"
    return python, ""


def vllm_python() -> tuple[Path | None, str]:
    """The vLLM venv's python, or None and why not."""
    return _python(VLLM_VENV, "vllm", "vllm-venv")


def infinity_python() -> tuple[Path | None, str]:
    """The infinity-emb venv's python, or None and why not."""
    return _python(INFINITY_VENV, "infinity_emb", "infinity-venv")


class VllmScorer:
    """``vllm.LLM.score`` in a worker process (bench/vllm_worker.py), called like a function."""

    def __init__(self, python: Path, model: str, *, dtype: str, log_name: str,
                 kwargs: dict[str, Any] | None = None) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{log_name}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(python), "-m", "bench.vllm_worker"], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        reply = self._ask({"cmd": "load", "model": model, "dtype": dtype,
                           "kwargs": kwargs or {}})
        self.version = reply.get("version")
        self.load_s = reply.get("load_s")

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the vLLM worker exited; see {self.log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"vLLM worker: {reply['error']} (log {self.log})")
        return reply

    def score(self, queries: list[str], documents: list[str]) -> list[float]:
        return list(self._ask({"cmd": "score", "queries": queries,
                               "documents": documents})["scores"])

    def close(self) -> None:
        try:
            self._ask({"cmd": "quit"})
            self.proc.wait(timeout=60)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
        self._log.close()
