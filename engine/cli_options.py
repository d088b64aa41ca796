"""The model-loading options that ``scorer rerank``, ``scorer score`` and ``scorer serve`` share.

One set of flags, one way from parsed arguments to ``Scorer.load``, so the three commands load
a model the same way (and spell vLLM's flags as ``vllm serve`` does).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_model_options", "json_object", "load_from_args"]


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def add_model_options(p: argparse.ArgumentParser, *, positional_model: bool = False) -> None:
    """Add the model and its loading flags to ``p`` (``model`` positional for ``serve``)."""
    if positional_model:
        p.add_argument("model", help="model folder or cached hub id")
    else:
        p.add_argument("--model", "-m", default=None,
                       help="model folder or cached hub id (default: the bundled "
                       "all-MiniLM-L6-v2)")
    p.add_argument("--score-type", choices=["cross-encoder", "late-interaction", "bi-encoder"],
                   default=None, help="override the score type detected from the checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    p.add_argument("--dtype", default="auto",
                   help="auto (exact), fast (bfloat16 where native), float32, bfloat16, float16")
    p.add_argument("--max-length", "--max-model-len", dest="max_length", type=int, default=None,
                   help="cap on tokens per model input")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass")
    p.add_argument("--hf-overrides", "--hf_overrides", dest="hf_overrides", type=json_object,
                   default=None, metavar="JSON",
                   help="LLM rerankers: vLLM's --hf-overrides, e.g. '{\"classifier_from_token\": "
                   "[\"no\", \"yes\"], \"method\": \"from_2_way_softmax\"}'")
    p.add_argument("--template", default=None, metavar="NAME|PATH",
                   help="LLM rerankers: a bundled score template name or a .jinja file")
    p.add_argument("--instruction", default=None, help="LLM rerankers: the template's instruction")


def load_from_args(args: argparse.Namespace) -> Any:
    """``Scorer.load`` with the options :func:`add_model_options` added."""
    from .scorer import Scorer

    return Scorer.load(
        args.model, score_type=args.score_type, device=args.device, dtype=args.dtype,
        max_length=args.max_length, batch_size=args.batch_size, hf_overrides=args.hf_overrides,
        template=args.template, instruction=args.instruction,
    )
