"""Loading weights and tokenizers once per process, with errors instead of random values."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, UnsupportedScoreType
from .checkpoint import read_json

__all__ = [
    "cached", "check_loading_info", "load_pretrained", "load_st_dense", "load_state_dict",
    "load_tokenizer",
]

logger = logging.getLogger("engine")


def load_tokenizer(path: Path, *, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load a tokenizer from {path}: {exc}. The folder needs tokenizer.json or "
            "the tokenizer files of its model family."
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        logger.warning("%s has no fast tokenizer; tokenizing will be slow.", path)
    return tokenizer


def check_loading_info(
    path: Path, loading_info: dict[str, Any], *, allow_missing: tuple[str, ...]
) -> None:
    """Turn weights missing from the checkpoint into an error instead of random values."""
    missing = [
        k for k in loading_info.get("missing_keys", ()) if not k.startswith(allow_missing)
    ]
    mismatched = list(loading_info.get("mismatched_keys", ()))
    if missing or mismatched:
        detail = f"missing: {missing[:5]}" if missing else f"mismatched: {mismatched[:5]}"
        raise ModelLoadError(
            f"The weights in {path} don't match its config.json ({detail}). Loading would use "
            "random values; re-save the checkpoint or pass the right score_type."
        )


class _Slot:
    """A strong-referable box so cached bundles can live in a WeakValueDictionary."""

    def __init__(self, value: Any) -> None:
        self.value = value


_CACHE: weakref.WeakValueDictionary[tuple[Any, ...], _Slot] = weakref.WeakValueDictionary()
_CACHE_LOCK = threading.Lock()


def cached(key: tuple[Any, ...], build: Callable[[], Any]) -> _Slot:
    """Return the cached slot for ``key`` or build it; weights live while any scorer holds them."""
    with _CACHE_LOCK:
        slot = _CACHE.get(key)
        if slot is None:
            slot = _Slot(build())
            _CACHE[key] = slot
        return slot


def load_pretrained(
    loader: Any, path: Path, *, dtype: torch.dtype, device: torch.device, trust_remote_code: bool,
    allow_missing: tuple[str, ...] = (), **kwargs: Any
) -> torch.nn.Module:
    """``loader.from_pretrained`` with clear errors, missing-weight checks and eval mode."""
    from transformers.utils import logging as hf_logging

    # transformers 5 draws a "Loading weights" bar per load; keep stderr for our own messages.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = loader.from_pretrained(
            str(path),
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            **kwargs,
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the weights in {path}: {type(exc).__name__}: {exc}. The checkpoint "
            "may be corrupt, of an architecture this transformers version doesn't know, or need "
            "trust_remote_code=True (only if you trust its code)."
        ) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    check_loading_info(path, info, allow_missing=allow_missing)
    model.to(device)
    model.eval()
    return model  # type: ignore[no-any-return]


# sentence-transformers Dense activations (dotted torch class names) → modules.
_ST_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": torch.nn.Identity,
    "torch.nn.modules.activation.Tanh": torch.nn.Tanh,
    "torch.nn.modules.activation.ReLU": torch.nn.ReLU,
    "torch.nn.modules.activation.GELU": torch.nn.GELU,
    "torch.nn.modules.activation.Sigmoid": torch.nn.Sigmoid,
}


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights of a small module folder or file (safetensors first; .bin/.pt weights_only)."""
    try:
        if path.is_dir():
            st = path / "model.safetensors"
            if st.is_file():
                from safetensors.torch import load_file

                return load_file(str(st))
            path = path / "pytorch_model.bin"
        return torch.load(str(path), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ModelLoadError(
            f"Could not read weights {path}: {exc}. The file is missing or corrupt."
        ) from exc


def load_st_dense(folder: Path) -> torch.nn.Sequential:
    """A sentence-transformers/PyLate ``Dense`` module: Linear (+bias) then its activation."""
    cfg = read_json(folder / "config.json")
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{folder} has no config.json; its Dense module is incomplete.")
    weights = load_state_dict(folder)
    bias = bool(cfg.get("bias", True))
    linear = torch.nn.Linear(int(cfg["in_features"]), int(cfg["out_features"]), bias=bias)
    try:
        linear.load_state_dict(
            {k.removeprefix("linear."): v for k, v in weights.items() if k.startswith("linear.")}
        )
    except RuntimeError as exc:
        raise ModelLoadError(f"Dense weights in {folder} don't match its config: {exc}") from exc
    act_name = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity"))
    act = _ST_ACTIVATIONS.get(act_name)
    if act is None:
        raise UnsupportedScoreType(
            f"Dense module {folder} uses activation {act_name!r}; "
            f"supported: {sorted(_ST_ACTIVATIONS)}."
        )
    return torch.nn.Sequential(linear, act())
