"""The model-loading options that ``scorer rerank``, ``scorer score`` and ``scorer serve`` share.

One set of flags, one way from parsed arguments to ``Scorer.load``, so the three commands load
a model the same way (and spell vLLM's flags as ``vllm serve`` does).
"""

from __future__ import annotations

import argparse
import json
import os
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


def vllm_json(text: str) -> Any:
    """argparse type for vLLM's JSON flags: parsed when it is JSON, else kept as given (vLLM's
    parser does the same and fails at load, which load_from_args does too, clearly)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_model_options(p: argparse.ArgumentParser, *, positional_model: bool = False) -> None:
    """Add the model and its loading flags to ``p``.

    ``positional_model``: ``scorer serve MODEL``, which also takes vLLM's spellings (both
    ``--x-y`` and ``--x_y``, ``--chat-template``, ``--trust-remote-code``, ``--runner``,
    ``--convert``), as ``vllm serve`` does.
    """
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
    p.add_argument("--max-length", "--max-model-len", "--max_model_len", dest="max_length",
                   type=int, default=None, help="cap on tokens per model input")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass")
    p.add_argument("--hf-overrides", "--hf_overrides", dest="hf_overrides",
                   type=vllm_json if positional_model else json_object,
                   default=None, metavar="JSON",
                   help="LLM rerankers: vLLM's --hf-overrides, e.g. '{\"classifier_from_token\": "
                   "[\"no\", \"yes\"], \"method\": \"from_2_way_softmax\"}'")
    template_flags = ["--template"]
    if positional_model:
        template_flags += ["--chat-template", "--chat_template"]
    p.add_argument(*template_flags, dest="template", default=None, metavar="NAME|PATH",
                   help="LLM rerankers: a bundled score template name or a .jinja file "
                   "(vLLM's --chat-template)")
    if positional_model:
        p.add_argument("--trust-remote-code", "--trust_remote_code", action="store_true",
                       help="run a checkpoint's own Python code (only if you trust it)")
        p.add_argument("--runner", default="auto", choices=["auto", "pooling"],
                       help="vLLM's runner: this server only scores (pooling)")
        p.add_argument("--convert", default="auto",
                       choices=["auto", "classify", "embed", "token_embed"],
                       help="vLLM's --convert: score as a classifier (cross-encoder), pooled "
                       "embeddings (bi-encoder) or token embeddings (late interaction)")
    p.add_argument("--instruction", default=None, help="LLM rerankers: the template's instruction")
    if positional_model:
        p.add_argument("--enable-lora", "--enable_lora", action="store_true",
                       help="serve LoRA adapters of the model (vLLM's --enable-lora)")
        p.add_argument("--lora-modules", "--lora_modules", nargs="+", default=None,
                       type=lora_module, metavar="NAME=PATH",
                       help="adapters served beside the base, each under its own model name: "
                       "name=path or JSON {\"name\": ..., \"path\": ...} (implies "
                       "--enable-lora)")
        p.add_argument("--max-lora-rank", "--max_lora_rank", type=int, default=None,
                       help="refuse adapters of a higher rank (vLLM's --max-lora-rank)")
        add_media_options(p)


def add_media_options(p: argparse.ArgumentParser) -> None:
    """Where a multimodal reranker may read image URLs from (vLLM's flags, plus ours for
    http(s), which vLLM fetches unasked and we fetch only when told to)."""
    p.add_argument("--allowed-local-media-path", "--allowed_local_media_path", default=None,
                   metavar="DIR", help="multimodal models: read file:// image URLs below DIR "
                   "only (default: refused)")
    p.add_argument("--allow-http-media", action="store_true",
                   help="multimodal models: fetch http(s):// image URLs (default: refused; "
                   "data: URLs are always read)")
    p.add_argument("--allowed-media-domains", "--allowed_media_domains", nargs="+",
                   default=None, metavar="HOST",
                   help="with --allow-http-media, fetch from these hosts only")
    p.add_argument("--media-fetch-timeout", type=float,
                   default=os.environ.get("VLLM_IMAGE_FETCH_TIMEOUT", "5"),
                   metavar="SECONDS", help="seconds for one image fetch (default: "
                   "VLLM_IMAGE_FETCH_TIMEOUT, else 5)")


def media_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ScorerConfig fields of :func:`add_media_options`."""
    domains = args.allowed_media_domains
    return {"allowed_local_media_path": args.allowed_local_media_path,
            "allow_http_media": args.allow_http_media or bool(domains),
            "allowed_media_domains": tuple(domains) if domains else None,
            "media_fetch_timeout": args.media_fetch_timeout}


def lora_module(value: str) -> tuple[str, str]:
    """One ``--lora-modules`` entry, in either of vLLM's spellings: ``name=path`` or JSON."""
    text = value.strip()
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"invalid JSON in --lora-modules: {exc}") from None
        if not isinstance(entry, dict) or not {"name", "path"} <= set(entry):
            raise argparse.ArgumentTypeError(
                f"--lora-modules JSON needs \"name\" and \"path\", got {text!r}.")
        return str(entry["name"]), str(entry["path"])
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"--lora-modules takes name=path (or JSON), got {value!r}.")
    return name, path


_CONVERT = {"classify": "cross-encoder", "embed": "bi-encoder", "token_embed": "late-interaction"}


def load_from_args(args: argparse.Namespace, *, vllm: bool = False) -> Any:
    """``Scorer.load`` with the options :func:`add_model_options` added.

    ``vllm``: for ``scorer serve``, as ``vllm serve`` loads: a template only when one is given,
    the score type from ``--convert`` where set.
    """
    from .errors import InputError
    from .scorer import Scorer

    overrides = args.hf_overrides
    if overrides is not None and not isinstance(overrides, dict):
        raise InputError(f"--hf-overrides must be a JSON object, got {overrides!r}.")
    options: dict[str, Any] = {}
    score_type = args.score_type
    if vllm:
        options.update(auto_template=False, trust_remote_code=args.trust_remote_code)
        modules = dict(args.lora_modules or [])
        if args.enable_lora or modules:
            options.update(enable_lora=True, lora_modules=modules or None)
        if args.max_lora_rank is not None:
            options.update(max_lora_rank=args.max_lora_rank)
        options.update(media_options(args))
        score_type = score_type or _CONVERT.get(args.convert)
    return Scorer.load(
        args.model, score_type=score_type, device=args.device, dtype=args.dtype,
        max_length=args.max_length, batch_size=args.batch_size, hf_overrides=overrides or None,
        template=args.template, instruction=args.instruction, **options,
    )
