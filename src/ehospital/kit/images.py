"""Uploaded files: sniff the real type from the bytes, check limits, strip metadata (EXIF)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps
from starlette.datastructures import UploadFile

from ehospital.kit.errors import BadRequest, DomainError, PayloadTooLarge, UnsupportedMedia

# Magic numbers of what we accept; the client's Content-Type is never trusted.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """The bytes of an upload, refused (413) as soon as they pass the limit."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(
            f"the file is larger than {limit // (1024 * 1024)} MiB", code="file_too_large", limit_bytes=limit
        )
    return data


@dataclass(frozen=True)
class CleanFile:
    content: bytes
    content_type: str
    width: int | None
    height: int | None


def sniff(data: bytes) -> str | None:
    """The media type the bytes really are, or None."""
    for magic, media_type in _SIGNATURES:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_upload(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    declared_type: str | None = None,
    allow_pdf: bool = True,
) -> CleanFile:
    """Validate an upload and return it re-encoded without metadata."""
    if not data:
        raise BadRequest("the file is empty", code="empty_file")
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"the file is larger than {max_bytes // (1024 * 1024)} MiB",
            code="file_too_large",
            limit_bytes=max_bytes,
        )
    real = sniff(data)
    if real is None or (real == "application/pdf" and not allow_pdf):
        raise UnsupportedMedia(
            "only JPEG, PNG or WebP photos" + (" and PDF documents" if allow_pdf else "") + " are accepted",
            code="unsupported_file_type",
        )
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared and declared not in ("application/octet-stream", real):
        raise UnsupportedMedia(
            f"the file says it is {declared} but its content is {real}",
            code="mislabelled_file",
            declared=declared,
            actual=real,
        )
    if real == "application/pdf":
        if b"%%EOF" not in data[-2048:]:
            raise BadRequest("the PDF document is truncated or damaged", code="corrupt_file")
        return CleanFile(content=data, content_type=real, width=None, height=None)
    return _reencode(data, real, max_pixels)


def _reencode(data: bytes, media_type: str, max_pixels: int) -> CleanFile:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    "the photo has too many pixels", code="image_too_large", limit_pixels=max_pixels
                )
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            # Apply the orientation tag before dropping it, so the photo stays upright.
            upright = ImageOps.exif_transpose(img)
            out = io.BytesIO()
            fmt = _PIL_FORMATS[media_type]
            if fmt == "JPEG" and upright.mode not in ("RGB", "L"):
                upright = upright.convert("RGB")
            # No exif=/icc_profile= arguments: Pillow writes none of the original metadata.
            upright.save(out, format=fmt, **({"quality": 90} if fmt != "PNG" else {}))
            return CleanFile(out.getvalue(), media_type, upright.width, upright.height)
    except DomainError:
        raise
    except Exception as exc:  # any decoder failure (OSError, ValueError, SyntaxError, bombs …)
        raise BadRequest("the photo is damaged or not a real image", code="corrupt_file") from exc
