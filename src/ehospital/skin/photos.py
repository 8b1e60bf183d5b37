"""A patient's skin photo from uploaded bytes: the real format sniffed, limits checked, decoded
upright at analysis size, and a metadata-free JPEG copy (no EXIF/GPS/ICC/XMP) made for storage."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy
from numpy.typing import NDArray
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from ehospital.kit.images import sniff

MiB = 1024 * 1024
ACCEPTED = ("image/jpeg", "image/png", "image/webp")
# Long side of the stored copy, its JPEG quality, and the long side a JPEG is at least decoded
# at (libjpeg scales by 1/2, 1/4, 1/8 while decoding, which is what makes a 12 MP phone photo
# cheap: 4000×3000 decodes at 2000×1500 in about 40 ms instead of 95 ms).
STORED_MAX_SIDE = 2048
STORED_QUALITY = 90
DECODE_MIN_SIDE = 1600

# Pillow's own parsers, called directly: `Image.open` would first try every format and warn
# (DecompressionBombWarning) about huge headers before we had a chance to refuse them.
_OPENERS: dict[str, type[ImageFile.ImageFile]] = {
    "image/jpeg": JpegImagePlugin.JpegImageFile,
    "image/png": PngImagePlugin.PngImageFile,
    "image/webp": WebPImagePlugin.WebPImageFile,
}
# ISO-BMFF brands (bytes 8–12 after "ftyp") of the still-image formats phones produce.
_HEIF_BRANDS = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic",
    b"hevx": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"avis": "image/avif",
}
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\xff\x0a", "image/jxl"),
    (b"\x00\x00\x00\x0cJXL ", "image/jxl"),
)


class PhotoRejected(Exception):
    """A photo refused before any analysis; `code` is machine-readable, `detail` JSON-ready."""

    def __init__(self, code: str, message: str, **detail: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail: dict[str, object] = dict(detail)


@dataclass(frozen=True)
class Photo:
    """A decoded photo: `rgb` upright (EXIF orientation applied), long side ≤ the analysis size;
    `clean` the copy to store (JPEG, no metadata, long side ≤ 2048) and `sha256` its digest."""

    rgb: NDArray[numpy.uint8] = field(repr=False)
    media_type: str
    original_width: int
    original_height: int
    clean: bytes = field(repr=False)
    sha256: str


def detect_media_type(data: bytes) -> str:
    """What the bytes really are (the file name and the client's Content-Type are never trusted)."""
    known = sniff(data)
    if known is not None:
        return known
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    for magic, media_type in _OTHER_SIGNATURES:
        if data.startswith(magic):
            return media_type
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "image/svg+xml"
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is still text
        if exc.start < len(data[:4096]) - 3:
            return "application/octet-stream"
        text = data[: exc.start].decode("utf-8")
    if text and all(ch.isprintable() or ch in "\t\r\n\f" for ch in text):
        return "text/plain"
    return "application/octet-stream"


def load_photo(
    data: bytes,
    *,
    max_bytes: int = 15 * MiB,
    max_pixels: int = 50_000_000,
    min_side: int = 320,
    analysis_max_side: int = 1024,
) -> Photo:
    """Check and decode an uploaded photo; raises PhotoRejected with the reason's code."""
    if not data:
        raise PhotoRejected("empty_file", "the file is empty")
    if len(data) > max_bytes:
        raise PhotoRejected(
            "file_too_large", "the file is too large", size_bytes=len(data), max_bytes=max_bytes
        )
    media_type = detect_media_type(data)
    if media_type not in ACCEPTED:
        raise PhotoRejected(
            "unsupported_format",
            "only JPEG, PNG or WebP photos are accepted",
            detected=media_type,
            accepted=list(ACCEPTED),
        )
    # WebP's decoder allocates the whole canvas as it opens: read the size from the header first.
    header = _webp_canvas(data) if media_type == "image/webp" else None
    if header is not None:
        _check_pixels(*header, max_pixels)
    try:
        image = _OPENERS[media_type](io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PhotoRejected(
            "too_many_pixels", "the photo has too many pixels", max_pixels=max_pixels
        ) from exc
    except Exception as exc:  # the header itself is broken
        raise PhotoRejected("corrupt_image", "the photo is damaged or not a real image") from exc
    width, height = image.size
    _check_pixels(width, height, max_pixels)
    if min(width, height) < min_side:
        raise PhotoRejected(
            "too_small", "the photo is too small", width=width, height=height, min_side=min_side
        )
    try:
        upright = _decode(image)
    except Exception as exc:  # truncated data, bad Huffman tables, CRC errors …
        raise PhotoRejected("corrupt_image", "the photo is damaged or not a real image") from exc
    clean = _encode(_shrink(upright, STORED_MAX_SIDE))
    rgb = numpy.asarray(_shrink(upright, analysis_max_side))
    return Photo(
        rgb=rgb,
        media_type=media_type,
        original_width=width,
        original_height=height,
        clean=clean,
        sha256=hashlib.sha256(clean).hexdigest(),
    )


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise PhotoRejected(
            "too_many_pixels",
            "the photo has too many pixels",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """Width and height from a WebP header (VP8, VP8L or VP8X), or None if unreadable."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _decode(image: ImageFile.ImageFile) -> Image.Image:
    """Pixels as upright RGB; JPEGs decoded at the smallest 1/2^k scale still ≥ DECODE_MIN_SIDE."""
    width, height = image.size
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        scale = 1
        while scale < 8 and max(width, height) // (scale * 2) >= DECODE_MIN_SIDE:
            scale *= 2
        if scale > 1:
            image.draft("RGB", (width // scale, height // scale))
    image.load()
    # Turn the pixels as the orientation tag says (read from the header before it is dropped).
    ImageOps.exif_transpose(image, in_place=True)
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; transparency is composited on white, 16-bit grey scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = numpy.asarray(image).astype(numpy.uint32)
        peak = 65535 if image.mode.startswith("I;16") or int(grey.max(initial=0)) > 255 else 255
        return Image.fromarray((grey * 255 // peak).astype(numpy.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """The image scaled down so its long side is at most `max_side` (never up)."""
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    factor = -(-longest // max_side)
    if factor >= 2 and longest // factor >= max_side * 3 // 4:
        return image.reduce(factor)  # whole-factor box averaging: 4–6× faster than resampling
    ratio = max_side / longest
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return image.resize(size, Image.Resampling.BOX)


def _encode(image: Image.Image) -> bytes:
    """Baseline JPEG with no EXIF, XMP, ICC profile or comment: Pillow writes only what `save` is
    given, and the decoded image's own metadata is dropped first as a second guard."""
    image.info = {}
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=STORED_QUALITY)
    return out.getvalue()
