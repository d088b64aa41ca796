"""The text encoder shared by the bi-encoder and late-interaction backends.

Each text is tokenized on its own with special tokens (never paired, never templated) and run
through the checkpoint's transformer; the backends' heads pool its token states (bi-encoder) or
project and normalise them (late interaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..calls import VllmTokenization
from ..config import ScorerConfig
from .batching import pad
from .checkpoint import CheckpointInfo, read_json
from .kernels import Linears
from .packed import TokenStates, build_packed_encoder, pack
from .runner import Prepared
from .tokenizing import cap_texts, encode_vllm, tokenize
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
        # The padding-free forward (BERT family), or None for the stock one.
        self.packed = build_packed_encoder(self.model, device)
        # Heads (Dense, projections) run in float32 through batch-invariant linear kernels.
        self.head_linears = Linears(device, torch.float32)

    def tokenize(
        self, texts: Sequence[str], *, limit: int, overflow: str, what: str,
        positions: Sequence[int] | None = None, vllm: VllmTokenization | None = None,
        cap: int = 0,
    ) -> Prepared:
        """Token ids of single texts: Scorer's rules (cut to ``limit`` and flag, or refuse),
        or with ``vllm`` vLLM's (text ``cap`` first, then its truncation or refusal)."""
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        if vllm is not None:
            capped, cut = cap_texts(self.tokenizer, texts, cap)
            prep = encode_vllm(self.tokenizer, capped, params=vllm)
            return Prepared(input_ids=prep.input_ids, token_type_ids=None,
                            truncated=[a or b for a, b in zip(cut, prep.truncated, strict=True)])
        return tokenize(
            self.tokenizer, texts, limit=limit, strategy="right", overflow=overflow, what=what,
            positions=positions,
        )

    def forward(
        self, ids: list[list[int]], _type_ids: list[list[int]] | None = None,
        packed: bool = False, attend: list[int] | None = None,
    ) -> TokenStates:
        """Last hidden states of one batch of unpadded id lists, packed ([T, H], own spans).

        ``packed``: use the padding-free forward (only where :attr:`packed` is set). Token type
        ids are 0 everywhere (single texts), so the runner's ``_type_ids`` are not read.
        ``attend``: per sequence, how many leading tokens are attended to (ColBERT's [MASK]
        query expansion is not); None: all.
        """
        lengths = tuple(len(s) for s in ids)
        if packed and self.packed is not None:
            return TokenStates(self.packed(pack(ids, attend=attend)), lengths)
        input_ids, mask = pad(ids, pad_id=self.pad_id)  # [B, L], [B, L]
        attention = mask
        if attend is not None:
            attention = torch.zeros_like(mask)
            for row, n in enumerate(attend):
                attention[row, :n] = 1
        hidden = self.forward_padded(input_ids, attention)  # [B, L, H]
        return TokenStates.from_padded(hidden, mask.to(hidden.device))

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
