"""Text encoders for the bi-encoder and late-interaction backends.

Each text is tokenized on its own with special tokens (never paired, never templated), run
through the checkpoint's transformer, and returned as token states that the backends pool
(bi-encoder) or project and normalise (late interaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ScorerConfig
from ..errors import ModelLoadError, UnsupportedScoreType
from .base import Tokenized, tokenize
from .batching import pad, plan_batches, release_after_each_batch, release_freed_memory
from .loading import CheckpointInfo, _read_json, load_pretrained, load_tokenizer
from .packed import build_packed_encoder, pack, unpack, use_packed

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
    cfg = _read_json(folder / "config.json")
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


@dataclass(frozen=True, kw_only=True)
class EncodedBatch:
    """Token states of one batch: ``hidden`` [B, L, H], ``mask`` [B, L], and input positions."""

    indices: list[int]
    hidden: torch.Tensor
    mask: torch.Tensor


class TextEncoder:
    """Tokenizer + base transformer (AutoModel) of a checkpoint, loaded once per process."""

    def __init__(self, *, info: CheckpointInfo, device: torch.device, dtype: torch.dtype,
                 trust_remote_code: bool) -> None:
        self.info = info
        self.device = device
        self.dtype = dtype
        transformer = info.st_modules_of("Transformer")
        self.model_path = transformer[0].path if transformer else info.path
        sbert = _read_json(self.model_path / "sentence_bert_config.json")
        self.do_lower_case = bool(isinstance(sbert, dict) and sbert.get("do_lower_case"))
        self.tokenizer = load_tokenizer(self.model_path, trust_remote_code=trust_remote_code)
        from transformers import AutoModel

        # Heads we never use (BERT pooler, LM heads) may be absent from an encoder checkpoint.
        self.model = load_pretrained(
            AutoModel, self.model_path, dtype=dtype, device=device,
            trust_remote_code=trust_remote_code, allow_missing=("pooler.",),
        )
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id) if pad_id is not None else 0
        self._uses_token_types = "token_type_ids" in getattr(
            self.tokenizer, "model_input_names", ()
        )
        # The padding-free forward (CPU, BERT family), or None for the stock one.
        self.packed = build_packed_encoder(self.model, device)

    def tokenize(
        self, texts: Sequence[str], *, limit: int, overflow: str, what: str,
        positions: Sequence[int] | None = None,
    ) -> Tokenized:
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return tokenize(
            self.tokenizer, texts, limit=limit, strategy="right", overflow=overflow, what=what,
            positions=positions,
        )

    def run(
        self, ids: list[list[int]], *, packed: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states [B, L, H] and mask [B, L] for one batch of unpadded id lists.

        ``packed``: use the padding-free forward (only where :attr:`packed` is set).
        """
        if packed and self.packed is not None:
            # Token type 0 everywhere, as the stock call below passes.
            return unpack(self.packed(pack(ids)), [len(s) for s in ids])
        input_ids, mask = pad(ids, pad_id=self.pad_id)  # [B, L], [B, L]
        kwargs = {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self._uses_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(kwargs["input_ids"])
        with torch.inference_mode():
            out = self.model(**kwargs)
        return out.last_hidden_state, kwargs["attention_mask"]

    def batches(
        self, ids: list[list[int]], *, max_batch_size: int, max_tokens_per_batch: int,
        call_items: int | None = None,
    ) -> Iterator[EncodedBatch]:
        """Encode id lists in length-sorted, token-budget batches (order given by ``indices``).

        ``call_items``: how many texts the whole call has, where ``ids`` is one window of it
        (it decides whether freed memory goes back after each batch).
        """
        lengths = [len(s) for s in ids]
        packed = use_packed(self.packed, lengths)
        plan = plan_batches(
            lengths, max_batch_size=max_batch_size,
            max_tokens_per_batch=max_tokens_per_batch, padded=not packed,
        )
        release = release_after_each_batch(call_items or len(ids), len(plan))
        if release:  # what the tokenizer freed
            release_freed_memory()
        for batch in plan:
            hidden, mask = self.run([ids[i] for i in batch], packed=packed)
            yield EncodedBatch(indices=batch, hidden=hidden, mask=mask)
            del hidden, mask
            if release:  # the caller is done with this batch's tensors
                release_freed_memory()


def shared_encoder(
    info: CheckpointInfo, config: ScorerConfig, device: torch.device, dtype: torch.dtype
) -> Any:
    """The process-wide TextEncoder slot for this checkpoint (weights loaded once)."""
    from .loading import cached

    transformer = info.st_modules_of("Transformer")
    path = transformer[0].path if transformer else info.path
    return cached(
        (str(path), "encoder", str(device), dtype, config.trust_remote_code),
        lambda: TextEncoder(
            info=info, device=device, dtype=dtype, trust_remote_code=config.trust_remote_code
        ),
    )
