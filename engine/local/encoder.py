"""The text encoder shared by the bi-encoder and late-interaction backends.

Each text is tokenized on its own with special tokens (never paired, never templated) and run
through the checkpoint's transformer; the backends' heads pool its token states (bi-encoder) or
project and normalise them (late interaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..config import ScorerConfig
from .batching import pad
from .checkpoint import CheckpointInfo, read_json
from .packed import build_packed_encoder, pack, unpack
from .runner import Prepared
from .tokenizing import tokenize
from .weights import cached, load_pretrained, load_tokenizer

__all__ = ["TextEncoder", "shared_encoder"]


class TextEncoder:
    """Tokenizer + base transformer (AutoModel) of a checkpoint, loaded once per process."""

    def __init__(self, *, info: CheckpointInfo, device: torch.device, dtype: torch.dtype,
                 trust_remote_code: bool) -> None:
        self.info = info
        self.device = device
        self.dtype = dtype
        transformer = info.st_modules_of("Transformer")
        self.model_path = transformer[0].path if transformer else info.path
        sbert = read_json(self.model_path / "sentence_bert_config.json")
        self.do_lower_case = bool(isinstance(sbert, dict) and sbert.get("do_lower_case"))
        self.tokenizer = load_tokenizer(self.model_path, trust_remote_code=trust_remote_code)
        from transformers import AutoModel

        # Heads we never use (BERT pooler, LM heads) may be absent from an encoder checkpoint.
        self.model = load_pretrained(
            AutoModel, self.model_path, dtype=dtype, device=device,
            trust_remote_code=trust_remote_code, allow_missing=("pooler.",),
            expect_unused=("linear.",),  # colbert-ir's projection, read by late interaction
        )
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id) if pad_id is not None else 0
        self.uses_token_types = "token_type_ids" in getattr(
            self.tokenizer, "model_input_names", ()
        )
        # The padding-free forward (CPU, BERT family), or None for the stock one.
        self.packed = build_packed_encoder(self.model, device)

    def tokenize(
        self, texts: Sequence[str], *, limit: int, overflow: str, what: str,
        positions: Sequence[int] | None = None,
    ) -> Prepared:
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return tokenize(
            self.tokenizer, texts, limit=limit, strategy="right", overflow=overflow, what=what,
            positions=positions,
        )

    def forward(
        self, ids: list[list[int]], _type_ids: list[list[int]] | None = None,
        packed: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states [B, L, H] and mask [B, L] for one batch of unpadded id lists.

        ``packed``: use the padding-free forward (only where :attr:`packed` is set). Token type
        ids are 0 everywhere (single texts), so the runner's ``_type_ids`` are not read.
        """
        if packed and self.packed is not None:
            return unpack(self.packed(pack(ids)), [len(s) for s in ids])
        input_ids, mask = pad(ids, pad_id=self.pad_id)  # [B, L], [B, L]
        return self.forward_padded(input_ids, mask), mask.to(self.device)

    def forward_padded(self, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Last hidden states [B, L, H] of padded ``input_ids`` [B, L] under ``attention``."""
        kwargs = {
            "input_ids": input_ids.to(self.device), "attention_mask": attention.to(self.device)
        }
        if self.uses_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(kwargs["input_ids"])
        with torch.inference_mode():
            return self.model(**kwargs).last_hidden_state  # type: ignore[no-any-return]


def shared_encoder(
    info: CheckpointInfo, config: ScorerConfig, device: torch.device, dtype: torch.dtype
) -> Any:
    """The process-wide TextEncoder slot for this checkpoint (weights loaded once)."""
    transformer = info.st_modules_of("Transformer")
    path = transformer[0].path if transformer else info.path
    return cached(
        (str(path), "encoder", str(device), dtype, config.trust_remote_code),
        lambda: TextEncoder(
            info=info, device=device, dtype=dtype, trust_remote_code=config.trust_remote_code
        ),
    )
