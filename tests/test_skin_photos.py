"""Skin photo intake: the real format sniffed, every refusal code, metadata stripped, upright."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib

import numpy
import pytest
from numpy.typing import NDArray
from PIL import ExifTags, Image

from ehospital.skin.photos import PhotoRejected, detect_media_type, load_photo

RGB = NDArray[numpy.uint8]


def skin_image(width: int = 640, height: int = 480, seed: int = 0) -> RGB:
    """A skin-toned picture with some texture (content does not matter here)."""
    rng = numpy.random.default_rng(seed)
    coarse = rng.normal(0.0, 12.0, (max(1, height // 16), max(1, width // 16))).astype(numpy.float32)
    shade = numpy.asarray(Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BILINEAR))
    base = numpy.array([205.0, 160.0, 135.0])
    out: RGB = numpy.clip(base + shade[..., None], 0, 255).astype(numpy.uint8)
    return out


def encode(rgb: RGB | Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def jpeg_segments(data: bytes) -> list[int]:
    """Marker bytes of a JPEG's segments up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def rejected(data: bytes, **kwargs: int) -> PhotoRejected:
    with pytest.raises(PhotoRejected) as caught:
        load_photo(data, **kwargs)
    return caught.value


# --- refusals -------------------------------------------------------------------------------------


def test_empty_file() -> None:
    assert rejected(b"").code == "empty_file"


def test_file_too_large() -> None:
    data = encode(skin_image())
    err = rejected(data, max_bytes=len(data) - 1)
    assert err.code == "file_too_large"
    assert err.detail == {"size_bytes": len(data), "max_bytes": len(data) - 1}


def test_pdf_renamed_jpg_is_refused_by_its_content() -> None:
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    err = rejected(pdf)  # whatever the file was called ("scan.jpg"), the bytes say PDF
    assert err.code == "unsupported_format"
    assert err.detail["detected"] == "application/pdf"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (encode(Image.new("P", (400, 400)), "GIF"), "image/gif"),
        (encode(Image.new("RGB", (400, 400)), "BMP"), "image/bmp"),
        (encode(Image.new("RGB", (400, 400)), "TIFF"), "image/tiff"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "image/heic"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64, "image/avif"),
        ("病历：面部痤疮三个月。\nAcne for three months.\n".encode(), "text/plain"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "image/svg+xml"),
        (bytes(range(256)) * 4, "application/octet-stream"),
    ],
    ids=["gif", "bmp", "tiff", "heic", "avif", "text", "svg", "binary"],
)
def test_other_formats_are_unsupported(data: bytes, detected: str) -> None:
    assert detect_media_type(data) == detected
    err = rejected(data)
    assert err.code == "unsupported_format"
    assert err.detail["detected"] == detected


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_photo_is_corrupt(fmt: str) -> None:
    data = encode(skin_image(), fmt)
    assert rejected(data[: len(data) // 2]).code == "corrupt_image"


def test_garbage_after_a_jpeg_signature_is_corrupt() -> None:
    assert rejected(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8).code == "corrupt_image"


def test_one_by_one_png_is_too_small() -> None:
    err = rejected(encode(Image.new("RGB", (1, 1), (200, 150, 130)), "PNG"))
    assert err.code == "too_small"
    assert err.detail == {"width": 1, "height": 1, "min_side": 320}


def test_shorter_side_decides_too_small() -> None:
    err = rejected(encode(skin_image(1200, 300)))
    assert err.code == "too_small"
    assert err.detail["height"] == 300
    assert load_photo(encode(skin_image(1200, 320))).original_height == 320


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width×height pixels, with a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def bomb_webp(width: int, height: int) -> bytes:
    """A WebP (VP8X) header whose canvas is width×height."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "data",
    [bomb_png(100_000, 100_000), bomb_png(9_000, 9_000), bomb_webp(16_000, 16_000)],
    ids=["png-10-gigapixel", "png-81-megapixel", "webp-256-megapixel"],
)
def test_decompression_bomb_is_refused_from_its_header(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning (or any other) on the way
        err = rejected(data)
    assert err.code == "too_many_pixels"
    assert err.detail["max_pixels"] == 50_000_000


def test_max_pixels_is_a_parameter() -> None:
    data = encode(skin_image(1000, 800))
    err = rejected(data, max_pixels=500_000)
    assert err.code == "too_many_pixels"
    assert (err.detail["width"], err.detail["height"]) == (1000, 800)


# --- what comes out ------------------------------------------------------------------------------


def test_accepted_formats() -> None:
    rgb = skin_image()
    for fmt, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        photo = load_photo(encode(rgb, fmt))
        assert photo.media_type == media_type
        assert photo.rgb.shape == (480, 640, 3)
        assert photo.rgb.dtype == numpy.uint8
        assert (photo.original_width, photo.original_height) == (640, 480)
        assert photo.sha256 == hashlib.sha256(photo.clean).hexdigest()
        assert detect_media_type(photo.clean) == "image/jpeg"


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_become_rgb(mode: str) -> None:
    photo = load_photo(encode(Image.fromarray(skin_image()).convert(mode)))
    assert photo.rgb.shape == (480, 640, 3)
    assert detect_media_type(photo.clean) == "image/jpeg"


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "AcmePhone"
    exif[ExifTags.Base.Model] = "Secret Model 12"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (39.0, 54.0, 27.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (116.0, 23.0, 17.0),
    }
    return exif


def test_exif_gps_and_all_metadata_are_stripped_from_the_stored_copy() -> None:
    source = encode(
        skin_image(),
        exif=exif_with_gps(),
        icc_profile=b"ICC-PROFILE-" * 20,
        xmp=b"<x:xmpmeta>home address</x:xmpmeta>",
        comment=b"taken at home",
    )
    original = Image.open(io.BytesIO(source))
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the upload does carry GPS
    clean = load_photo(source).clean
    # Only JFIF (APP0), quantisation/Huffman tables and the frame: no APP1 (EXIF, XMP), APP2
    # (ICC) or other application segment, no comment.
    markers = jpeg_segments(clean)
    assert not {m for m in markers if 0xE1 <= m <= 0xEF or m == 0xFE}
    stored = Image.open(io.BytesIO(clean))
    assert not stored.getexif()
    assert not {"exif", "xmp", "icc_profile", "comment"} & set(stored.info)
    for secret in (b"AcmePhone", b"Secret Model", b"home address", b"taken at home", b"ICC-PROFILE"):
        assert secret not in clean


def test_orientation_tag_is_applied() -> None:
    # Stored sideways as phones do: left half red, right half blue, tag 6 ("rotate 90° clockwise").
    rgb = numpy.zeros((480, 640, 3), numpy.uint8)
    rgb[:, :320] = (220, 30, 30)
    rgb[:, 320:] = (30, 30, 220)
    photo = load_photo(encode(rgb, exif=exif_with_gps(orientation=6)))
    assert photo.rgb.shape == (640, 480, 3)  # upright: portrait
    assert (photo.original_width, photo.original_height) == (640, 480)
    top, bottom = photo.rgb[:300].reshape(-1, 3).mean(0), photo.rgb[340:].reshape(-1, 3).mean(0)
    assert top[0] > 180 > top[2]  # the left edge turned to the top
    assert bottom[2] > 180 > bottom[0]
    stored = Image.open(io.BytesIO(photo.clean))
    assert stored.size == (480, 640)
    assert ExifTags.Base.Orientation not in stored.getexif()  # never turned twice


def test_png_with_alpha_is_composited_on_white() -> None:
    rgba = numpy.zeros((400, 400, 4), numpy.uint8)
    rgba[..., :3] = (180, 120, 100)
    rgba[:, :200, 3] = 255  # left half opaque skin, right half fully transparent
    photo = load_photo(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert photo.media_type == "image/png"
    assert photo.rgb.shape == (400, 400, 3)
    assert tuple(photo.rgb[200, 100]) == (180, 120, 100)
    assert tuple(photo.rgb[200, 300]) == (255, 255, 255)


def test_palette_and_sixteen_bit_grey_png() -> None:
    palette = Image.fromarray(skin_image(400, 400)).convert("P")
    assert load_photo(encode(palette, "PNG")).rgb.shape == (400, 400, 3)
    grey16 = Image.fromarray(numpy.full((400, 400), 32768, numpy.uint16))
    assert grey16.mode.startswith("I;16")
    rgb = load_photo(encode(grey16, "PNG")).rgb
    assert abs(int(rgb[10, 10, 0]) - 127) <= 1


def test_phone_sized_jpeg_is_decoded_small_and_stored_at_most_2048() -> None:
    big = Image.fromarray(skin_image(400, 300)).resize((4000, 3000))
    photo = load_photo(encode(big, quality=85))
    assert (photo.original_width, photo.original_height) == (4000, 3000)
    assert max(photo.rgb.shape[:2]) <= 1024
    assert photo.rgb.shape[0] * 4 == photo.rgb.shape[1] * 3
    stored = Image.open(io.BytesIO(photo.clean))
    assert max(stored.size) <= 2048
    assert min(stored.size) >= 1500


def test_analysis_size_is_a_parameter() -> None:
    photo = load_photo(encode(skin_image(1200, 900)), analysis_max_side=512)
    assert max(photo.rgb.shape[:2]) <= 512


def test_rejection_carries_code_message_and_detail() -> None:
    err = rejected(b"%PDF-1.4 ...")
    assert isinstance(err, Exception)
    assert err.code == "unsupported_format"
    assert err.message and str(err) == err.message
    assert isinstance(err.detail, dict)
