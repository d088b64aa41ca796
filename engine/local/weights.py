"""Loading weights and tokenizers once per process, with errors instead of random values."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, UnsupportedScoreType
from .checkpoint import read_json

__all__ = [
    "cached", "check_loading_info", "load_pretrained", "load_st_dense", "load_state_dict",
    "load_tokenizer", "read_weights",
]

logger = logging.getLogger("engine")


# Files that carry a vocabulary; a folder with none of them gets an empty tokenizer from
# transformers (specials only), which reads every word as [UNK] and scores every text alike.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model",
                   "sentencepiece.bpe.model", "sentencepiece.model", "vocab.model")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' progress bars and warnings off the terminal for the length of a load.

    What matters of them is turned into our own errors and log lines; the rest (its ANSI
    "LOAD REPORT" table, config-class notes about nemotron's custom model type) is noise to a
    user who never called transformers.
    """
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def load_tokenizer(path: Path, *, trust_remote_code: bool, **kwargs: Any) -> Any:
    """AutoTokenizer with clear errors; ``kwargs`` go to ``from_pretrained`` (e.g. ``config=``
    for a checkpoint whose config.json only remote code can parse)."""
    from transformers import AutoTokenizer

    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{path} has no tokenizer files (expected one of {list(TOKENIZER_FILES)}): the "
            "tokenizer would have no vocabulary, read every word as unknown and score every "
            "text alike. Copy the tokenizer files into the folder (tokenizer.save_pretrained)."
        )
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(
                str(path), trust_remote_code=trust_remote_code, **kwargs
            )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load a tokenizer from {path}: {exc}. The folder needs tokenizer.json or "
            "the tokenizer files of its model family."
        ) from exc
    if len(tokenizer) - len(set(tokenizer.all_special_ids)) < 2:
        raise ModelLoadError(
            f"The tokenizer in {path} has no vocabulary beyond its special tokens "
            f"({len(tokenizer)} tokens), so every word would be unknown. Its tokenizer files are "
            "empty or broken; re-save them from the original model."
        )
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
    allow_missing: tuple[str, ...] = (), expect_unused: tuple[str, ...] = (), **kwargs: Any
) -> torch.nn.Module:
    """``loader.from_pretrained`` with clear errors, missing-weight checks and eval mode.

    transformers' own progress bar and ANSI "LOAD REPORT" table are kept off the terminal:
    missing weights become a ModelLoadError here, and weights the model has no use for (a head
    dropped because a score type was forced) one plain log line; ``expect_unused`` names
    weight prefixes the caller reads itself (a ColBERT projection), which are not reported.
    """
    try:
        with quiet_transformers():
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
    check_loading_info(path, info, allow_missing=allow_missing)
    unused = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith(expect_unused))
    if unused:
        logger.warning(
            "%s: %d weight(s) of the checkpoint are not part of %s and are not used (%s%s); "
            "expected when a score type other than the checkpoint's own is asked for.",
            path, len(unused), type(model).__name__, ", ".join(unused[:4]),
            ", ..." if len(unused) > 4 else "",
        )
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


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder: model.safetensors, its shards (via the index
    file), or pytorch_model.bin (weights_only). For architectures loaded without transformers.
    """
    from safetensors.torch import load_file

    index = read_json(path / "model.safetensors.index.json")
    try:
        if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(index["weight_map"].values())):
                state.update(load_file(str(path / shard)))
            return state
        if (path / "model.safetensors").is_file():
            return load_file(str(path / "model.safetensors"))
        if (path / "pytorch_model.bin").is_file():
            return torch.load(  # type: ignore[no-any-return]
                str(path / "pytorch_model.bin"), map_location="cpu", weights_only=True
            )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not read the weights in {path}: {exc}. The files are corrupt or truncated; "
            "re-download or re-save the checkpoint."
        ) from exc
    raise ModelLoadError(
        f"{path} has no model.safetensors, shard index or pytorch_model.bin; the checkpoint is "
        "incomplete."
    )
