"""Pure input checks and vLLM's pairing rule (1:1, 1:N, N:N); no model involved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from .errors import InputError, PairingError

__all__ = ["as_text_list", "check_text", "pair_indices", "validate_truncate_prompt_tokens"]

PAIRING_MESSAGE = "Input lengths must be either 1:1, 1:N or N:N"


def check_text(text: str, *, where: str) -> str:
    """Refuse a string that is not valid Unicode (a lone surrogate such as ``"\\ud800"``).

    JSON and Python both allow lone surrogates, but no tokenizer can read them (the fast
    tokenizers raise a TypeError deep inside); refusing here names the input and the place.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"{where} has a lone surrogate {text[exc.start]!r} at character {exc.start}, "
                "which is not valid Unicode text, so no tokenizer can read it. Decode the source "
                "with errors='replace' (or fix the text) before scoring."
            ) from None
    return text


def as_text_list(value: Any, *, side: str) -> list[str]:
    """Wrap a single string into a list and check every item is a valid string.

    ``side`` names the argument ("queries" or "documents") in error messages. Mappings and sets
    are refused: iterating them would score a dict's keys, or a set in an arbitrary order.
    """
    if isinstance(value, str):
        return [check_text(value, where=side)]
    if value is None:
        raise InputError(f"{side} is None; pass a string or a list of strings.")
    if isinstance(value, (bytes, bytearray)):
        raise InputError(f"{side} is bytes; decode it to str first.")
    if isinstance(value, Mapping):
        if "content" in value:
            raise InputError(
                f"{side} is a multimodal input ({{'content': [...]}}), which this text-only "
                "model can't score; pass text, or load a multimodal reranker."
            )
        raise InputError(
            f"{side} is a {type(value).__name__}; iterating it would score its keys. Pass a list "
            "of strings (e.g. list(d.values()))."
        )
    if isinstance(value, AbstractSet):
        raise InputError(
            f"{side} is a {type(value).__name__}, whose order is arbitrary, so results could not "
            "be matched to your documents. Pass a list (sorted(...) for a fixed order)."
        )
    if not isinstance(value, Sequence) and not hasattr(value, "__iter__"):
        raise InputError(
            f"{side} must be a string or a list of strings, got {type(value).__name__}."
        )
    items = list(value)
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and "content" in item:
            raise InputError(
                f"{side}[{i}] is a multimodal input ({{'content': [...]}}), which this "
                "text-only model can't score; pass text, or load a multimodal reranker."
            )
        if not isinstance(item, str):
            raise InputError(
                f"{side}[{i}] is {type(item).__name__} ({item!r:.60}), not str. "
                f"Every item must be a string; convert or drop it before scoring."
            )
        check_text(item, where=f"{side}[{i}]")
    return items


def pair_indices(n_queries: int, n_documents: int) -> list[int]:
    """Query index for each pair, by vLLM's rule; the number of pairs is ``n_documents``.

    Raises:
        InputError: when a side is empty.
        PairingError: for N:M with N > 1 and N != M (N:1 is not broadcast either).
    """
    if n_queries == 0:
        raise InputError("At least one text element must be given (queries is empty).")
    if n_documents == 0:
        raise InputError("At least one text_pair element must be given (documents is empty).")
    if n_queries == 1:
        return [0] * n_documents
    if n_queries == n_documents:
        return list(range(n_documents))
    raise PairingError(
        f"{PAIRING_MESSAGE}; got {n_queries} queries and {n_documents} documents. "
        "Pass one query for many documents, or equal-length lists to pair them like zip()."
    )


def validate_truncate_prompt_tokens(
    value: Any, max_length: int | None, min_length: int = 1
) -> int | None:
    """Resolve vLLM's ``truncate_prompt_tokens``: None (off), -1 (model max) or
    min_length..max_length.

    ``min_length``: the fewest tokens an input can be cut to and keep its special tokens and
    one token of text. With ``max_length`` None (a remote model, whose limit the server knows)
    -1 stays -1 and only the form is checked.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"truncate_prompt_tokens must be an int or None, got {value!r}.")
    if value < -1 or value == 0:
        raise InputError(
            f"truncate_prompt_tokens must be -1 (model maximum) or a positive int, got {value}."
        )
    if max_length is None:
        return value
    if value == -1:
        return max_length
    if value > max_length:
        raise InputError(
            f"truncate_prompt_tokens value ({value}) is greater than max_model_len ({max_length}). "
            "Please request a smaller truncation size."
        )
    if value < min_length:
        raise InputError(
            f"truncate_prompt_tokens={value} is below {min_length}, the fewest tokens this "
            "model's inputs can be cut to (its special tokens plus one token of text). Pass "
            f"{min_length} or more, or -1 for the model maximum."
        )
    return value
