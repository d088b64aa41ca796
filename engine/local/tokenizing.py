"""Prepare-stage helpers: tokenizing with explicit truncation, and cutting texts to N tokens.

Nothing here touches the model: inputs become unpadded token-id lists, and every cut is
reported (per input) instead of hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError, InputTooLongError
from .runner import Prepared

__all__ = ["distinct", "tokenize", "truncate_text_to_tokens"]


def _encode(tokenizer: Any, first: list[str], second: list[str] | None, **kwargs: Any) -> Any:
    # verbose=False: we report over-long inputs ourselves, per result.
    return tokenizer(
        first, second, add_special_tokens=True, padding=False, verbose=False, **kwargs
    )


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    pairs_with: Sequence[str] | None = None,
    *,
    limit: int,
    strategy: str,
    overflow: str,
    what: str = "input",
    positions: Sequence[int] | None = None,
) -> Prepared:
    """Tokenize texts (or text pairs) and fit each to ``limit`` tokens without hiding it.

    Inputs over the limit are re-tokenized with ``strategy`` ("only_second" cuts the document of a
    pair; "longest_first" is HF's default and vLLM's for truncate_prompt_tokens; "right" for single
    texts). With ``overflow="error"`` an over-long input raises instead, naming its index (its
    entry in ``positions`` when the texts are a subset of the caller's input).
    """
    first = list(texts)
    second = list(pairs_with) if pairs_with is not None else None
    enc = _encode(tokenizer, first, second)
    ids: list[list[int]] = enc["input_ids"]
    types: list[list[int]] | None = enc.get("token_type_ids")
    over = [i for i, seq in enumerate(ids) if len(seq) > limit]
    truncated = [False] * len(ids)
    if not over:
        return Prepared(input_ids=ids, token_type_ids=types, truncated=truncated)
    if overflow == "error":
        i = over[0]
        shown = positions[i] if positions is not None else i
        raise InputTooLongError(
            f"{what} {shown} is {len(ids[i])} tokens, over the limit of {limit} "
            f"({len(over)} of {len(ids)} inputs are too long). Shorten it, or load with "
            "overflow='truncate' (or pass truncate_prompt_tokens) to cut it and flag the result."
        )
    sub_first = [first[i] for i in over]
    sub_second = [second[i] for i in over] if second is not None else None
    if second is None:
        cut = _encode(tokenizer, sub_first, None, truncation=True, max_length=limit)
    else:
        try:
            cut = _encode(tokenizer, sub_first, sub_second, truncation=strategy, max_length=limit)
        except Exception:
            # "only_second" can't help when the query alone is over the limit: cut both sides.
            cut = _encode(
                tokenizer, sub_first, sub_second, truncation="longest_first", max_length=limit
            )
    for j, i in enumerate(over):
        ids[i] = cut["input_ids"][j]
        if types is not None:
            types[i] = cut["token_type_ids"][j]
        truncated[i] = True
    return Prepared(input_ids=ids, token_type_ids=types, truncated=truncated)


def distinct(texts: list[str], index: list[int]) -> tuple[list[str], list[int], list[int]]:
    """Each distinct text once, ``index`` remapped onto them, and where each first appears.

    So identical queries of an N:N call are encoded once, like the query of a 1:N call.
    """
    slot: dict[str, int] = {}
    first: list[int] = []
    remap = []
    for i, text in enumerate(texts):
        if text not in slot:
            slot[text] = len(slot)
            first.append(i)
        remap.append(slot[text])
    return list(slot), [remap[i] for i in index], first


def truncate_text_to_tokens(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_tokens`` content tokens (special tokens not counted).

    As vLLM's ``truncate_text_to_tokens``: cut at the character offset where the last kept token
    ends (the tokenizer's offset mapping), and repeat until re-tokenizing fits, since a cut can
    change how the end of the text merges. Returns the text and whether it was cut.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            "max_tokens_per_query / max_tokens_per_doc need a fast tokenizer (offset mappings); "
            "this checkpoint has only a slow one. Drop the option or add a tokenizer.json."
        )
    cut = False
    while True:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text, cut
        end = offsets[max_tokens - 1][1] if max_tokens > 0 else 0
        # Guard against a tokenizer whose offsets don't shrink the text: drop a character.
        text = text[: min(end, len(text) - 1)]
        cut = True
