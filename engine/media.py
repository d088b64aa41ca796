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

import base64
import binascii
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import InputError
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
_MIB = 1024 * 1024


class MediaError(InputError):
    """An image input could not be fetched, was refused by the media policy, or is corrupt."""


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


# -- loading ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class MediaPolicy:
    """Where images may come from, and how big they may be.

    Attributes:
        allowed_local_media_path: ``file://`` URLs are read only below this directory; None
            refuses them (vLLM's ``--allowed-local-media-path``).
        allow_http: fetch ``http(s)://`` URLs at all (off by default).
        allowed_media_domains: with allow_http, only these host names (empty = any host).
        fetch_timeout: seconds for one HTTP fetch (vLLM's VLLM_IMAGE_FETCH_TIMEOUT, 5).
        max_bytes: the largest encoded image accepted (fetched, read or base64-decoded).
        max_pixels: the largest decoded image (width × height), against decompression bombs.
    """

    allowed_local_media_path: str | None = None
    allow_http: bool = False
    allowed_media_domains: tuple[str, ...] = ()
    fetch_timeout: float = 5.0
    max_bytes: int = 20 * _MIB
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.allowed_local_media_path is not None:
            root = Path(self.allowed_local_media_path).expanduser()
            if not root.is_dir():
                raise InputError(
                    f"allowed_local_media_path {self.allowed_local_media_path!r} is not an "
                    "existing directory; pass the folder images may be read from."
                )
            object.__setattr__(self, "allowed_local_media_path", str(root.resolve()))
        for name in ("max_bytes", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        if (
            isinstance(self.fetch_timeout, bool)
            or not isinstance(self.fetch_timeout, (int, float))
            or self.fetch_timeout <= 0
        ):
            raise InputError(
                f"fetch_timeout must be a positive number, got {self.fetch_timeout!r}."
            )
        object.__setattr__(self, "allowed_media_domains", tuple(self.allowed_media_domains))


def load_image(url: str, *, policy: MediaPolicy, where: str) -> Any:
    """Fetch and decode one image URL under ``policy``: a PIL image in RGB mode.

    ``where`` names the input in errors ("document 3, image 0").

    Raises:
        MediaError: a refused scheme or location, a fetch failure, an over-size or corrupt image.
        MissingDependency: Pillow is not installed (extra ``multimodal``).
    """
    data = _read_url(url, policy=policy, where=where)
    return _decode(data, policy=policy, where=where)


def _read_url(url: str, *, policy: MediaPolicy, where: str) -> bytes:
    if url[:5].lower() == "data:":
        return _read_data_url(url, policy=policy, where=where)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _read_file_url(parts.netloc + unquote(parts.path), policy=policy, where=where)
    if scheme in ("http", "https"):
        return _fetch(url, parts.hostname or "", policy=policy, where=where)
    raise MediaError(
        f"{where}: {url[:48]!r} is not a data:, file:// or http(s):// URL (vLLM: \"The URL must "
        'be either a HTTP, data or file URL."). Embed the image as data:image/png;base64,... '
        "or give a file:// URL under allowed_local_media_path."
    )


def _read_data_url(url: str, *, policy: MediaPolicy, where: str) -> bytes:
    spec, sep, payload = url[5:].partition(",")
    if not sep:
        raise MediaError(f"{where}: invalid data URL {url[:32]!r}: missing ',' separator.")
    media_type, _, encoding = spec.rpartition(";")
    if encoding != "base64":
        raise MediaError(
            f"{where}: only base64 data URLs are supported (data:image/png;base64,...), got "
            f"{url[:32]!r}."
        )
    media_type = media_type.partition(";")[0].strip().lower()
    if media_type and not media_type.startswith("image/"):
        raise MediaError(f"{where}: a data URL of type {media_type!r} is not an image.")
    if len(payload) * 3 // 4 > policy.max_bytes + 3:
        raise MediaError(_too_big(where, len(payload) * 3 // 4, policy))
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{where}: the data URL is not valid base64 ({exc}).") from None


def _read_file_url(raw: str, *, policy: MediaPolicy, where: str) -> bytes:
    if policy.allowed_local_media_path is None:
        raise MediaError(
            f"{where}: cannot load local files without allowed_local_media_path (vLLM's "
            "--allowed-local-media-path). Load the model with allowed_local_media_path= the "
            "folder holding your images, or embed them as data: URLs."
        )
    root = Path(policy.allowed_local_media_path)
    path = Path(raw)
    resolved = path.resolve()
    if root not in resolved.parents:
        raise MediaError(
            f"{where}: the file path {path} must be a subpath of allowed_local_media_path "
            f"{root} (symbolic links are followed before the check)."
        )
    try:
        size = resolved.stat().st_size
        if size > policy.max_bytes:
            raise MediaError(_too_big(where, size, policy))
        return resolved.read_bytes()
    except OSError as exc:
        raise MediaError(f"{where}: could not read {path}: {exc.strerror or exc}.") from None


def _fetch(url: str, host: str, *, policy: MediaPolicy, where: str) -> bytes:
    if not policy.allow_http:
        raise MediaError(
            f"{where}: fetching {url[:64]!r} is off. Load the model with allow_http_media=True "
            "(optionally allowed_media_domains=[...]) to fetch http(s) images, or embed the image "
            "as a data:image/...;base64, URL."
        )
    if policy.allowed_media_domains and host not in policy.allowed_media_domains:
        raise MediaError(
            f"{where}: the URL must be from one of the allowed domains: "
            f"{list(policy.allowed_media_domains)}. Input URL domain: {host}"
        )
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "scorer"})
    try:
        with urllib.request.urlopen(request, timeout=policy.fetch_timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
                raise MediaError(_too_big(where, int(declared), policy))
            data: bytes = response.read(policy.max_bytes + 1)
    except MediaError:
        raise
    except urllib.error.HTTPError as exc:
        raise MediaError(f"{where}: fetching {url[:64]!r} failed: HTTP {exc.code}.") from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MediaError(
            f"{where}: fetching {url[:64]!r} failed ({reason}); timeout {policy.fetch_timeout}s."
        ) from None
    if len(data) > policy.max_bytes:
        raise MediaError(_too_big(where, len(data), policy))
    return data


def _too_big(where: str, size: int, policy: MediaPolicy) -> str:
    return (
        f"{where}: the image is {size:,} bytes, over the cap of {policy.max_bytes:,} "
        "(max_media_bytes). Send a smaller image or raise the cap."
    )


def _decode(data: bytes, *, policy: MediaPolicy, where: str) -> Any:
    from ._optional import require

    pil = require("PIL.Image", extra="multimodal", purpose="Image inputs")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            image = pil.open(io.BytesIO(data))
            width, height = image.size  # read from the header, before any pixel is decoded
            if width * height > policy.max_pixels:
                raise MediaError(
                    f"{where}: the image is {width}x{height} pixels, over the cap of "
                    f"{policy.max_pixels:,} (max_image_pixels). Send a smaller image."
                )
            image.load()
    except MediaError:
        raise
    except Exception as exc:  # UnidentifiedImageError, truncated files, bombs, bad headers
        raise MediaError(
            f"{where}: the image could not be decoded ({type(exc).__name__}: {exc}). "
            "The data is corrupt or not an image format Pillow reads."
        ) from None
    return _to_rgb(image, pil)


def _to_rgb(image: Any, pil: Any) -> Any:
    """vLLM's convert_image_mode(image, "RGB"): transparency composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in getattr(image, "info", {}):
        rgba = image.convert("RGBA")
        out = pil.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.split()[3])
        return out
    return image.convert("RGB")

