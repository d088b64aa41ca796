"""Multimodal score inputs: vLLM's ``ScoreMultiModalParam``, parsed, checked and loaded.

A query or document may be a plain string or, for a multimodal reranker, vLLM's
``{"content": [part, ...]}`` with OpenAI chat parts::

    {"content": [{"type": "text", "text": "a red bicycle"},
                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}

:func:`parse_score_items` turns what a caller passed into :data:`ScoreItem` values (``str`` or
:class:`ScoreContent`) and refuses malformed parts with the item's index. Nothing is loaded
then: images are fetched and decoded when a backend prepares the pair (:func:`load_image`),
under a :class:`MediaPolicy`:

- ``data:image/...;base64,`` URLs are always allowed;
- ``file://`` URLs only below ``allowed_local_media_path`` (vLLM's ``--allowed-local-media-path``);
- ``http(s)://`` URLs only with ``allow_http=True`` (vLLM fetches them by default; we don't),
  optionally only from ``allowed_media_domains``, with a timeout and a byte cap;
- decoding uses Pillow (extra ``multimodal``), refuses images over ``max_pixels`` and converts
  to RGB on a white background, as vLLM's ``convert_image_mode`` does.

No torch and no framework is imported here: the server and the wrappers build these types too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .media_loading import MediaError, MediaPolicy, load_image
from .pairing import check_text

__all__ = [
    "IMAGE_PLACEHOLDER",
    "ContentPart",
    "ImagePart",
    "MediaError",
    "MediaNotSupportedError",
    "MediaPolicy",
    "ScoreContent",
    "ScoreItem",
    "TextPart",
    "has_media",
    "load_image",
    "media_not_supported_message",
    "parse_score_item",
    "parse_score_items",
    "refuse_media",
    "text_and_image",
]

# The Qwen2-VL / Qwen3-VL / jina-reranker-m0 placeholder of one image in the prompt text
# (vLLM's get_placeholder_str); the processor expands <|image_pad|> to one token per patch group.
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


class MediaNotSupportedError(InputError):
    """A multimodal input was given to a model that reads text only (vLLM's message)."""


def media_not_supported_message(architecture: str) -> str:
    """vLLM's exact refusal (``_validate_mm_score_input`` in ``pooling/scoring/utils.py``)."""
    return f"MultiModalParam is not supported for {architecture}"


# -- the input types ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextPart:
    """``{"type": "text", "text": ...}``."""

    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """``{"type": "image_url", "image_url": {"url": ...}}``; the URL is loaded by the backend."""

    url: str


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ScoreContent:
    """One multimodal query or document: vLLM's ``ScoreMultiModalParam`` after the checks.

    Attributes:
        parts: the content parts in the caller's order.
    """

    parts: tuple[ContentPart, ...]

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.parts if isinstance(p, TextPart))

    def prompt_text(self, placeholder: str = IMAGE_PLACEHOLDER) -> str:
        """The text vLLM makes of this content for the prompt (``_parse_score_content``).

        Text parts are joined with ``"\\n"``; one placeholder per image goes in FRONT of the text,
        with nothing between (vLLM: ``interleave_strings=False``, separator ``""``), e.g.
        ``<|vision_start|><|image_pad|><|vision_end|>a red bicycle``.
        """
        return placeholder * len(self.images) + "\n".join(self.texts)

    def to_param(self) -> dict[str, Any]:
        """Back to vLLM's wire form (what a rerank answer returns as ``document.multi_modal``)."""
        return {"content": self.content_parts()}

    def content_parts(self) -> list[dict[str, Any]]:
        """The parts as OpenAI chat dicts, in order."""
        return [
            {"type": "text", "text": p.text}
            if isinstance(p, TextPart)
            else {"type": "image_url", "image_url": {"url": p.url}}
            for p in self.parts
        ]


# What a query or document may be once parsed.
ScoreItem = str | ScoreContent

# Part types vLLM's chat parser knows that this engine does not load (yet).
_UNSUPPORTED_PARTS = {
    "image_embeds": "precomputed image embeddings",
    "image_pil": "PIL images",
    "video_url": "videos",
    "input_audio": "audio",
    "audio_url": "audio",
    "audio_embeds": "audio embeddings",
}


def _part(value: Any, where: str) -> ContentPart:
    if not isinstance(value, Mapping):
        if isinstance(value, str):
            return TextPart(check_text(value, where=where))  # vLLM takes bare strings too
        raise InputError(
            f"{where} is {type(value).__name__}; a content part is a dict such as "
            '{"type": "text", "text": "..."} or {"type": "image_url", "image_url": {"url": ...}}.'
        )
    kind = value.get("type")
    if kind is None and len(value) == 1:
        # vLLM also accepts a typeless part with a single known key ({"image_url": {...}}).
        kind = next(iter(value))
    if kind == "text":
        text = value.get("text")
        if not isinstance(text, str):
            raise InputError(f"{where} is a text part without a string 'text' (got {text!r:.60}).")
        return TextPart(check_text(text, where=f"{where}['text']"))
    if kind == "image_url":
        spec = value.get("image_url")
        url = spec.get("url") if isinstance(spec, Mapping) else spec
        if not isinstance(url, str) or not url:
            raise InputError(
                f"{where} is an image_url part without a URL; write "
                '{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}.'
            )
        return ImagePart(url)
    if kind in _UNSUPPORTED_PARTS:
        raise InputError(
            f"{where} is a {kind!r} part: {_UNSUPPORTED_PARTS[kind]} are not supported here; "
            "pass images as image_url parts (data:, file:// or http(s) URLs)."
        )
    raise InputError(
        f"{where} has unknown part type {kind!r}; the types are 'text' and 'image_url'."
    )


def text_and_image(text: str, url: str) -> dict[str, Any]:
    """vLLM's ``{"content": [...]}`` item for a text (left out when empty) and one image URL:
    how the wrappers send a document that carries an image."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return {"content": [*parts, {"type": "image_url", "image_url": {"url": url}}]}


def parse_score_item(value: Any, *, where: str) -> ScoreItem:
    """One query or document: a string, a :class:`ScoreContent`, or ``{"content": [...]}``.

    Raises:
        InputError: anything else, or a malformed part (``where`` names the item).
    """
    if isinstance(value, str):
        return check_text(value, where=where)  # the text models' rule (no lone surrogates)
    if isinstance(value, ScoreContent):
        return value
    if isinstance(value, Mapping) and "content" in value:
        extra = sorted(set(value) - {"content"})
        if extra:
            raise InputError(
                f"{where} has unknown key(s) {extra}; a multimodal input is "
                '{"content": [parts]} and nothing else (no "role").'
            )
        parts = value["content"]
        if isinstance(parts, (str, Mapping)) or not isinstance(parts, Sequence):
            raise InputError(f"{where}['content'] must be a list of parts, got {parts!r:.60}.")
        if not parts:
            raise InputError(f"{where}['content'] is empty; give at least one part.")
        return ScoreContent(
            tuple(_part(p, f"{where}['content'][{i}]") for i, p in enumerate(parts))
        )
    raise InputError(
        f"{where} is {type(value).__name__} ({value!r:.60}); a query or document is a string or "
        '{"content": [{"type": "text", ...}, {"type": "image_url", ...}]}.'
    )


def parse_score_items(value: Any, *, side: str) -> list[ScoreItem]:
    """A side of a call (one item or a list of them) as :data:`ScoreItem` values.

    The list rules match :func:`engine.pairing.as_text_list`: a single item is wrapped, and a
    set, bytes or None are refused. ``side`` ("queries" / "documents") names items in errors.
    """
    if isinstance(value, (str, ScoreContent)) or (
        isinstance(value, Mapping) and "content" in value
    ):
        return [parse_score_item(value, where=side)]
    if value is None or isinstance(value, (bytes, bytearray, Mapping, set, frozenset)):
        raise InputError(
            f"{side} must be a string, a {{'content': [...]}} input or a list of them, got "
            f"{type(value).__name__}."
        )
    if not isinstance(value, Sequence):
        raise InputError(f"{side} must be a list, got {type(value).__name__}.")
    return [parse_score_item(v, where=f"{side}[{i}]") for i, v in enumerate(value)]


def has_media(items: Sequence[object]) -> bool:
    """True if any item is a :class:`ScoreContent` (even a text-only one: vLLM refuses those
    for text models too)."""
    return any(isinstance(item, ScoreContent) for item in items)


def refuse_media(items: Sequence[object], *, architecture: str, side: str) -> None:
    """Raise vLLM's error if a text-only model is given a ``{"content": [...]}`` input.

    Raises:
        MediaNotSupportedError: with vLLM's text, then which item and the fix.
    """
    for i, item in enumerate(items):
        if isinstance(item, ScoreContent):
            raise MediaNotSupportedError(
                f"{media_not_supported_message(architecture)}. ({side}[{i}] is a multimodal "
                "input; this model reads text only: pass strings, or load a multimodal reranker "
                "such as JinaVLForSequenceClassification or Qwen3VLForSequenceClassification.)"
            )
