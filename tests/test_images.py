"""Image parts of chat messages (``server/images.py``): what decodes, and every refusal naming
its part. Images are made with Pillow here; the network is ``httpx.MockTransport`` and a fake
resolver (``test_webfetch.Net``): nothing leaves the machine."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from typing import Any

import httpx
import pytest
from PIL import Image

from safework.server.images import ImageError, ImagePart, ImageSettings, load_images

from .test_webfetch import Net


def encoded(fmt: str = "PNG", size: tuple[int, int] = (40, 30), **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def part(url: str) -> ImagePart:
    return ImagePart.model_validate({"type": "image_url", "image_url": {"url": url}})


def load(urls: list[str], settings: ImageSettings | None = None, fetcher: Any = None) -> list:
    parts = [(f"messages[0].content[{i}]", part(u)) for i, u in enumerate(urls)]
    return asyncio.run(load_images(parts, settings or ImageSettings(), fetcher))


def refused(urls: list[str], settings: ImageSettings | None = None, fetcher: Any = None) -> str:
    with pytest.raises(ImageError) as caught:
        load(urls, settings, fetcher)
    return str(caught.value)


def claimed_size_png(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encoded("PNG", (1, 1)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_each_accepted_type_decodes_to_rgb(fmt: str, mime: str) -> None:
    (image,) = load([data_url(encoded(fmt), mime)])
    assert image.mode == "RGB"
    assert image.size == (40, 30)


def test_an_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    (image,) = load([data_url(buffer.getvalue(), "image/gif")])
    red, _, blue = image.getpixel((0, 0))
    assert red > 200
    assert blue < 50


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (data_url(encoded("JPEG"), "image/png"), "the data is JPEG, not the declared image/png"),
        (data_url(b"hello", "text/plain"), "text/plain is not an accepted image type"),
        (data_url(encoded(), "image/svg+xml"), "image/svg+xml is not an accepted image type"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png,rawbytes", "must be data:<type>;base64,<data>"),
        (data_url(b""), "the image is empty"),
        (data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "not a PNG, JPEG, WebP or GIF"),
        (data_url(encoded()[:60]), "cannot be decoded"),
        (data_url(claimed_size_png(60_000, 60_000)), "more than 16,777,216 pixels"),
        (data_url(claimed_size_png(5000, 4000)), "5000x4000 pixels; at most 16,777,216"),
        ("file:///etc/passwd", "must be a data: URL"),
        ("ftp://example.com/a.png", "must be a data: URL"),
        ("http://example.com/a.png", "does not fetch image URLs"),
    ],
)
def test_a_bad_image_is_refused_naming_its_part(url: str, message: str) -> None:
    error = refused(["data:image/png;base64," + base64.b64encode(encoded()).decode(), url])
    assert error.startswith("messages[0].content[1]: ")
    assert message in error


def test_size_and_count_limits() -> None:
    big = data_url(encoded("PNG", (300, 300), compress_level=0))
    small = ImageSettings(max_bytes=10_000)
    assert "over 10,000 bytes" in refused([big], small)
    one = data_url(encoded())
    assert load([one] * 4)  # the default allows four
    assert refused([one] * 5).startswith("messages[0].content[4]: at most 4 images")
    assert "accepts no images" in refused([one], ImageSettings(max_images=0))


DNS = {"img.example": ["93.184.216.34"], "inside.example": ["10.0.0.7"]}


class ImageNet(Net):
    def __init__(self) -> None:
        png = encoded()
        super().__init__(
            {
                "/cat.png": httpx.Response(200, content=png, headers={"content-type": "image/png"}),
                "/page": httpx.Response(200, html="<p>not an image</p>"),
                "/liar.jpg": httpx.Response(
                    200, content=png, headers={"content-type": "image/jpeg"}
                ),
                "/huge.png": httpx.Response(
                    200, content=b"\0" * 50_000, headers={"content-type": "image/png"}
                ),
                "/hop": httpx.Response(302, headers={"location": "http://127.0.0.1/cat.png"}),
            }
        )

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return DNS[host]


def test_image_urls_are_fetched_only_when_allowed_and_only_from_public_addresses() -> None:
    net = ImageNet()
    fetcher = net.fetcher(max_bytes=20_000)
    allowed = ImageSettings(fetch=True)
    (image,) = load(["http://img.example/cat.png"], allowed, fetcher)
    assert image.size == (40, 30)
    assert "does not fetch" in refused(["http://img.example/cat.png"], ImageSettings(), fetcher)
    assert "private address" in refused(["http://inside.example/cat.png"], allowed, fetcher)
    assert "loopback" in refused(["http://img.example/hop"], allowed, fetcher)  # the redirect
    assert "not an accepted type (text/html)" in refused(
        ["http://img.example/page"], allowed, fetcher
    )
    assert "over 20,000 bytes" in refused(["http://img.example/huge.png"], allowed, fetcher)
    liar = refused(["http://img.example/liar.jpg"], allowed, fetcher)
    assert "the data is PNG, not the declared image/jpeg" in liar
    assert all(r.url.host == "93.184.216.34" for r in net.requests)  # pinned to the checked IP
