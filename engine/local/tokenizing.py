"""Prepare-stage helpers: tokenizing with explicit truncation, and cutting texts to N tokens.

Nothing here touches the model: inputs become unpadded token-id lists, and every cut is
reported (per input) instead of hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..calls import VllmTokenization
from ..errors import InputError, InputTooLongError
from .runner import Prepared

__all__ = [
    "distinct", "encode_vllm", "tokenize", "too_long_message", "truncate_text_to_tokens",
]


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


def too_long_message(max_model_len: int, count: int) -> str:
    """vLLM's refusal of a prompt over the model's context length (its renderer's text)."""
    # The tokenizer was told to stop at max_model_len + 1 tokens, so that count means more.
    qualifier = "at least " if count == max_model_len + 1 else ""
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
        f"contains {qualifier}{count} input tokens, which exceeds this limit even without any "
        "output tokens. Please reduce the length of the input prompt."
    )


def encode_vllm(
    tokenizer: Any, texts: Sequence[str], pairs_with: Sequence[str] | None = None, *,
    params: VllmTokenization, doc_limits: Sequence[int] | None = None,
) -> Prepared:
    """Tokenize as vLLM's renderer does, then truncate, pad and check the length.

    Without ``truncate`` the tokenizer stops at max_model_len + 1 and a longer prompt is an
    InputTooLongError with vLLM's message; with it, the tokenizer's own truncation (longest
    first for pairs) keeps ``truncate`` tokens, or with an explicit ``side`` the whole prompt is
    tokenized and sliced from that side. ``doc_limits``: per pair, a max_length that cuts only
    the document (vLLM's max_tokens_per_doc for a tokenizer pair).
    """
    first = list(texts)
    second = list(pairs_with) if pairs_with is not None else None
    sliced = params.truncate is not None and params.side is not None
    if sliced:
        kwargs: dict[str, Any] = {"truncation": False}
    else:
        limit = params.truncate if params.truncate is not None else params.max_model_len + 1
        kwargs = {"truncation": True, "max_length": limit}
    if doc_limits is not None and second is not None:
        ids: list[list[int]] = []
        types: list[list[int]] | None = []
        cut: list[bool] = []
        for q, d, cap in zip(first, second, doc_limits, strict=True):
            capped = dict(kwargs, truncation="only_second",
                          max_length=min(cap, kwargs.get("max_length", cap)))
            enc = _encode(tokenizer, [q], [d], **capped)
            ids.append(list(enc["input_ids"][0]))
            cut.append(_overflowed(enc, 0))
            if types is not None and enc.get("token_type_ids") is not None:
                types.append(list(enc["token_type_ids"][0]))
            else:
                types = None
    else:
        ids, types, cut = _encode_each(tokenizer, first, second, kwargs)
    if params.pad_to is not None and tokenizer.pad_token_id is None:
        raise InputError(
            "padding='max_length' needs a pad token, and this tokenizer has none (vLLM fails "
            "with a TypeError here). Drop padding from tokenization_kwargs."
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for i, seq in enumerate(ids):
        if sliced and params.truncate is not None and len(seq) > params.truncate:
            keep = slice(-params.truncate, None) if params.side == "left" else slice(
                0, params.truncate)
            ids[i] = seq = seq[keep]
            if types is not None:
                types[i] = types[i][keep]
            cut[i] = True
        if params.pad_to is not None and len(seq) < params.pad_to:
            extra = params.pad_to - len(seq)
            ids[i] = seq = seq + [pad_id] * extra
            if types is not None:
                types[i] = types[i] + [types[i][-1] if types[i] else 0] * extra
        if len(seq) > params.max_model_len:
            raise InputTooLongError(too_long_message(params.max_model_len, len(seq))
                                    + f" (parameter=input_tokens, value={len(seq)})")
    return Prepared(input_ids=ids, token_type_ids=types, truncated=cut)


def _overflowed(enc: Any, i: int) -> bool:
    """Whether the tokenizer's truncation cut sequence ``i`` (fast tokenizers record it)."""
    encodings = getattr(enc, "encodings", None)
    return bool(encodings and encodings[i].overflowing)


def cap_texts(tokenizer: Any, texts: Sequence[str], cap: int) -> tuple[list[str], list[bool]]:
    """Each text cut to ``cap`` content tokens (0: no cap), and which were cut."""
    if cap <= 0:
        return list(texts), [False] * len(texts)
    out = [truncate_text_to_tokens(tokenizer, t, cap) for t in texts]
    return [t for t, _ in out], [c for _, c in out]


def prepare_pairs_vllm(
    tokenizer: Any, queries: Sequence[str], documents: Sequence[str], params: VllmTokenization
) -> Prepared:
    """A cross-encoder's pairs as vLLM builds them: texts capped (max_tokens_per_query/doc),
    then ``tokenizer(query, document)``, the document cap also as an only-second limit."""
    qs, q_cut = cap_texts(tokenizer, queries, params.max_tokens_per_query)
    ds, d_cut = cap_texts(tokenizer, documents, params.max_tokens_per_doc)
    doc_limits = None
    if params.max_tokens_per_doc > 0:
        specials = int(tokenizer.num_special_tokens_to_add(pair=True))
        doc_limits = [
            len(tokenizer(q, add_special_tokens=False)["input_ids"]) + params.max_tokens_per_doc
            + specials for q in qs
        ]
    prep = encode_vllm(tokenizer, qs, ds, params=params, doc_limits=doc_limits)
    cut = [a or b or c for a, b, c in zip(q_cut, d_cut, prep.truncated, strict=True)]
    return Prepared(input_ids=prep.input_ids, token_type_ids=prep.token_type_ids, truncated=cut)


def _encode_each(
    tokenizer: Any, first: list[str], second: list[str] | None, kwargs: dict[str, Any]
) -> tuple[list[list[int]], list[list[int]] | None, list[bool]]:
    """Ids, token types and truncation flags; a pair whose document is empty is encoded as
    the query alone, as ``tokenizer(text=q, text_pair="")`` does (vLLM calls it per pair)."""
    singles = [i for i in range(len(first)) if second is not None and not second[i]]
    if second is None or not singles:
        enc = _encode(tokenizer, first, second, **kwargs)
        raw_types = enc.get("token_type_ids")
        return ([list(x) for x in enc["input_ids"]],
                [list(t) for t in raw_types] if raw_types is not None else None,
                [_overflowed(enc, i) for i in range(len(first))])
    pairs = [i for i in range(len(first)) if second[i]]
    ids: list[list[int]] = [[] for _ in first]
    types: list[list[int]] | None = [[] for _ in first]
    cut = [False] * len(first)
    for group, pair_with in ((pairs, [second[i] for i in pairs]), (singles, None)):
        if not group:
            continue
        enc = _encode(tokenizer, [first[i] for i in group], pair_with, **kwargs)
        raw_types = enc.get("token_type_ids")
        for j, i in enumerate(group):
            ids[i] = list(enc["input_ids"][j])
            cut[i] = _overflowed(enc, j)
            if types is not None and raw_types is not None:
                types[i] = list(raw_types[j])
            else:
                types = None
    return ids, types, cut
