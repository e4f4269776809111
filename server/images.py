"""Images in chat messages (OpenAI's ``image_url`` content parts), checked and decoded before
anything reaches the engine.

A part is ``{"type": "image_url", "image_url": {"url": ..., "detail": "auto"|"low"|"high"}}``.
Its URL is either

- a ``data:`` URL, ``data:image/png;base64,...`` (PNG, JPEG, WebP or GIF), at most
  ``max_bytes`` once decoded; or
- an ``http(s)`` URL, fetched only when the operator allows it (``--image-fetch``), through
  ``search.webfetch.SafeFetcher`` as search reads are: public addresses only, every redirect
  checked, the connection pinned to the checked address, at most ``max_bytes`` within
  ``fetch_timeout_s``. Otherwise it is refused (the server never reaches out on a client's
  word by default).

Pillow decodes the bytes in a thread. The format must be one of the four and the one declared
(by the data: URL, or by the response's ``Content-Type``); the size is read from the header and
checked against ``max_pixels`` before any pixel is decoded (a 100-byte PNG can claim 60,000 x
60,000 pixels: a decompression bomb); an animated image gives its first frame; the result is
RGB. ``detail`` is accepted and not used: the model's own processor decides the resolution. A
request carries at most ``max_images`` images.

Anything wrong is an ``ImageError`` naming the part (``messages[1].content[0]``); the server
answers it as a 400 before any generation starts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "FORMATS",
    "ImageError",
    "ImagePart",
    "ImageSettings",
    "ImageURL",
    "load_images",
]

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
"""Accepted MIME types and the Pillow format each must decode as."""
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(;[^;,]*)*?);base64,", re.I)


class ImageURL(BaseModel):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


@dataclass(frozen=True)
class ImageSettings:
    """What the server accepts in image parts (``safework serve --max-images ...``)."""

    max_images: int = 4
    """Images per request; 0 refuses every image."""
    max_bytes: int = 8 * 1024 * 1024
    """Encoded size of one image (the request body limit, ``--max-body-bytes``, applies too)."""
    max_pixels: int = 4096 * 4096
    """Width x height of one image, checked before its pixels are decoded."""
    fetch: bool = False
    """Whether ``http(s)`` image URLs are fetched (only public addresses, see the module)."""
    fetch_timeout_s: float = 10.0


class ImageError(ValueError):
    """An image part the server refuses; ``param`` names it (``messages[0].content[1]``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


async def load_images(
    parts: Sequence[tuple[str, ImagePart]],
    settings: ImageSettings,
    fetcher: Any = None,
) -> list[Image]:
    """Decode ``(param, part)`` pairs, in order, into RGB images; ``ImageError`` for the first
    part refused. ``fetcher``: a ``SafeFetcher`` for http(s) URLs (``settings.fetch``)."""
    if len(parts) > settings.max_images:
        param = parts[settings.max_images][0]
        if settings.max_images == 0:
            raise ImageError("this server accepts no images", param)
        raise ImageError(f"at most {settings.max_images} images per request", param)
    out = []
    for param, part in parts:
        data, declared = await _read(param, part.image_url.url, settings, fetcher)
        out.append(await asyncio.to_thread(_decode, data, declared, param, settings.max_pixels))
    return out


async def _read(
    param: str, url: str, settings: ImageSettings, fetcher: Any
) -> tuple[bytes, str | None]:
    """The image's bytes and the MIME type declared for them (the data: URL's, or the
    response's ``Content-Type``)."""
    if url[:5].lower() == "data:":  # megabytes of base64: decoded off the event loop
        return await asyncio.to_thread(_from_data_url, param, url, settings.max_bytes)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("http", "https"):
        raise ImageError("an image URL must be a data: URL (or http(s), where allowed)", param)
    if not settings.fetch or fetcher is None:
        raise ImageError(
            "this server does not fetch image URLs; send the image inline as a data: URL",
            param,
        )
    from safework.search.webfetch import FetchRefused, FetchTimeout

    try:
        data, kind = await fetcher.fetch_bytes(url, tuple(FORMATS))
    except FetchTimeout:
        message = f"the image did not arrive within {settings.fetch_timeout_s:g}s"
        raise ImageError(message, param) from None
    except FetchRefused as e:
        raise ImageError(f"the image URL was not fetched: {e}", param) from None
    return data, kind


def _from_data_url(param: str, url: str, max_bytes: int) -> tuple[bytes, str]:
    match = _DATA_URL.match(url)
    if match is None:
        raise ImageError("a data: URL must be data:<type>;base64,<data>", param)
    mime = match["mime"].lower()
    if mime not in FORMATS:
        raise ImageError(f"{mime} is not an accepted image type ({', '.join(FORMATS)})", param)
    payload = url[match.end() :]
    if len(payload) > (max_bytes + 2) // 3 * 4 + 4:
        raise ImageError(f"the image is over {max_bytes:,} bytes", param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the data: URL is not valid base64", param) from None
    if len(data) > max_bytes:
        raise ImageError(f"the image is over {max_bytes:,} bytes", param)
    return data, mime


def _decode(data: bytes, declared: str | None, param: str, max_pixels: int) -> Image:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("the image is empty", param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS.values()))
            expected = FORMATS.get(declared) if declared else None
            if expected is not None and image.format != expected:
                raise ImageError(f"the data is {image.format}, not the declared {declared}", param)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"the image is {width}x{height} pixels; at most {max_pixels:,} are accepted",
                    param,
                )
            image.seek(0)  # the first frame of an animation
            return image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"the image has more than {max_pixels:,} pixels", param) from None
    except UnidentifiedImageError:
        raise ImageError("the data is not a PNG, JPEG, WebP or GIF image", param) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt pixels
        raise ImageError(f"the image cannot be decoded ({type(e).__name__})", param) from None
