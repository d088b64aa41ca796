"""Loading image URLs under a :class:`MediaPolicy`: data:, file:// and http(s):// sources,
size caps, Pillow decoding and vLLM's RGB conversion (see :mod:`engine.media`).

No torch and no framework is imported here; Pillow only when an image is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import InputError

__all__ = ["MediaError", "MediaPolicy", "load_image"]

_MIB = 1024 * 1024


class MediaError(InputError):
    """An image input could not be fetched, was refused by the media policy, or is corrupt."""


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
            "folder holding your images (scorer serve: --allowed-local-media-path DIR), or "
            "embed them as data: URLs."
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
            "(optionally allowed_media_domains=[...]; scorer serve: --allow-http-media) to fetch "
            "http(s) images, or embed the image as a data:image/...;base64, URL."
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

