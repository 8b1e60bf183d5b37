"""Photo checks: dark, over-exposed, blurred and skin-less photos (walls, documents, landscapes)
are refused with their reason; ACNE04's facial photos pass; every reason is explained."""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ehospital.skin.photos import load_photo
from ehospital.skin.quality import CHECKS, REASONS, QualityReport, check_photo, explain

RGB = NDArray[numpy.uint8]
Floats = NDArray[numpy.float32]

ACNE04 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skin" / "acne04"
IN_CI = os.environ.get("CI", "").lower() == "true"


def acne04(split: str) -> list[Path]:
    folder = ACNE04 / split
    if not folder.is_dir():
        if IN_CI:
            pytest.fail(f"the ACNE04 photos are missing in CI: expected {folder}")
        pytest.skip(f"ACNE04 photos not found at {folder} (../shared/data/skin/acne04 beside the repository)")
    return sorted(folder.glob("*.jpg"))


def checked(rgb: RGB | bytes) -> QualityReport:
    """The report for a photo that went through the real intake (JPEG bytes → load_photo)."""
    data = rgb if isinstance(rgb, bytes) else jpeg(rgb)
    return check_photo(load_photo(data).rgb)


def jpeg(rgb: RGB, quality: int = 88) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


# --- synthetic negatives --------------------------------------------------------------------------
# Close to what a phone records: smooth lighting gradients with vignetting, surface texture at
# several scales, sensor noise, JPEG compression.

SIZE = 640


def fractal(rng: numpy.random.Generator, octaves: int = 6, base: int = 8) -> Floats:
    """Smooth multi-scale noise (≈ unit spread), like paint roller stipple or plaster."""
    out = numpy.zeros((SIZE, SIZE), numpy.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        n = base * 2**octave
        small = rng.normal(0.0, 1.0, (n, n)).astype(numpy.float32)
        out += amplitude * numpy.asarray(
            Image.fromarray(small, "F").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        )
        total += amplitude
        amplitude *= 0.6
    return out / total


def lighting(rng: numpy.random.Generator, low: float = 0.7, high: float = 1.05) -> Floats:
    yy, xx = numpy.mgrid[0:SIZE, 0:SIZE].astype(numpy.float32) / SIZE
    angle = rng.uniform(0.0, 2 * numpy.pi)
    ramp = numpy.cos(angle) * xx + numpy.sin(angle) * yy
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    cx, cy = rng.uniform(0.2, 0.8, 2)
    vignette = 1.0 - 0.35 * ((xx - cx) ** 2 + (yy - cy) ** 2)
    out: Floats = (low + (high - low) * ramp) * vignette
    return out


def finish(rng: numpy.random.Generator, pixels: NDArray[numpy.float64] | Floats, noise: float = 2.0) -> RGB:
    noisy = pixels + rng.normal(0.0, noise, pixels.shape)
    return numpy.clip(noisy, 0, 255).astype(numpy.uint8)


def painted_wall(
    colour: tuple[int, int, int], warm: float = 0.0, texture: float = 0.06
) -> Callable[[int], RGB]:
    def make(seed: int) -> RGB:
        rng = numpy.random.default_rng(seed)
        relief = fractal(rng) * texture + rng.normal(0.0, texture / 2, (SIZE, SIZE)).astype(numpy.float32)
        pixels = numpy.array(colour, numpy.float32) * ((1 + relief) * lighting(rng))[..., None]
        if warm:  # a warm lamp on one side, daylight on the other
            xx = numpy.linspace(0.0, 1.0, SIZE, dtype=numpy.float32)[None, :, None]
            pixels = pixels * (1 + warm * xx * numpy.array([1.0, 0.3, -1.0], numpy.float32))
        return finish(rng, pixels)

    return make


def brick_wall(seed: int) -> RGB:
    rng = numpy.random.default_rng(seed)
    pixels = numpy.empty((SIZE, SIZE, 3), numpy.float32)
    pixels[:] = (175, 170, 160)  # mortar
    course = int(rng.integers(28, 60))
    length, joint = course * rng.uniform(2.2, 2.8), max(3, course // 8)
    for row, top in enumerate(range(0, SIZE, course)):
        left = -(length / 2) * (row % 2)
        while left < SIZE:
            x0, x1 = int(max(0, left + joint)), int(min(SIZE, left + length))
            brick = numpy.array([rng.uniform(140, 190), rng.uniform(60, 95), rng.uniform(45, 75)])
            pixels[top + joint : top + course, x0:x1] = brick
            left += length
    pixels *= ((1 + 0.08 * fractal(rng, 5)) * lighting(rng))[..., None]
    return finish(rng, pixels, noise=3.0)


def text_page(seed: int) -> RGB:
    rng = numpy.random.default_rng(seed)
    page = Image.new("RGB", (SIZE, SIZE), (236, 234, 228))
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(14, 22))
    font = ImageFont.load_default(size=size)
    words = ["patient", "consent", "form", "treatment", "dosage", "daily", "hospital", "signature", "date"]
    y = 30
    while y < SIZE - 30:
        draw.text((30, y), " ".join(rng.choice(words, 9)), fill=(25, 25, 30), font=font)
        y += int(size * 1.6)
    return finish(rng, numpy.asarray(page, numpy.float32) * lighting(rng, 0.8, 1.0)[..., None])


def landscape(seed: int) -> RGB:
    rng = numpy.random.default_rng(seed)
    yy = numpy.mgrid[0:SIZE, 0:SIZE][0].astype(numpy.float32) / SIZE
    horizon = rng.uniform(0.35, 0.6) + 0.1 * fractal(rng, 3, 2)
    sky = numpy.stack([120 + 60 * yy, 170 + 40 * yy, 235 + 0 * yy], axis=-1)
    grass = fractal(rng)
    ground = numpy.stack([70 + 40 * grass, 120 + 50 * grass, 50 + 20 * grass], axis=-1)
    return finish(rng, numpy.where((yy > horizon)[..., None], ground, sky))


def wood(seed: int) -> RGB:
    rng = numpy.random.default_rng(seed)
    yy, xx = numpy.mgrid[0:SIZE, 0:SIZE].astype(numpy.float32)
    grain = numpy.sin((yy + 30 * fractal(rng, 4, 4) + 0.05 * xx) / rng.uniform(5, 12)) * 0.5 + 0.5
    fibres = rng.normal(0.0, 0.04, (SIZE, 1)).astype(numpy.float32)  # fine lengthwise streaks
    base = numpy.array([rng.uniform(170, 205), rng.uniform(115, 145), rng.uniform(65, 95)], numpy.float32)
    return finish(rng, base * ((0.8 + 0.25 * grain + fibres) * lighting(rng))[..., None], noise=3.0)


def wall_with_switch(seed: int) -> RGB:
    """A peach wall with a white light switch and a strip of brown floor: structure, but no face."""
    page = Image.fromarray(painted_wall((242, 196, 166))(seed))
    rng = numpy.random.default_rng(seed)
    draw = ImageDraw.Draw(page)
    x, y = (int(v) for v in rng.uniform(100, 400, 2))
    draw.rectangle((x, y, x + 120, y + 120), fill=(238, 238, 235), outline=(150, 150, 150), width=3)
    draw.rectangle((x + 45, y + 35, x + 75, y + 85), fill=(225, 225, 222), outline=(120, 120, 120), width=2)
    draw.rectangle((0, int(rng.uniform(500, 600)), SIZE, SIZE), fill=(90, 60, 40))
    return numpy.asarray(page)


NEGATIVES: dict[str, Callable[[int], RGB]] = {
    "beige painted wall": painted_wall((224, 200, 168)),
    "peach painted wall": painted_wall((242, 196, 166), texture=0.09),
    "peach wall in warm lamplight": painted_wall((242, 196, 166), warm=0.15),
    "pink painted wall": painted_wall((236, 192, 182)),
    "tan plaster wall": painted_wall((205, 170, 130), texture=0.1),
    "plain smooth wall": painted_wall((230, 210, 185), texture=0.0),
    "grey wall": painted_wall((200, 200, 198)),
    "red brick wall": brick_wall,
    "wooden door": wood,
    "wall with a light switch": wall_with_switch,
    "page of text": text_page,
    "landscape": landscape,
}


@pytest.mark.parametrize("name", list(NEGATIVES))
@pytest.mark.parametrize("seed", [1, 2])
def test_photos_without_a_face_are_refused(name: str, seed: int) -> None:
    report = checked(NEGATIVES[name](seed))
    assert report.reason == "not_enough_skin", (name, report.to_dict())
    assert not report.ok


def test_black_image_is_too_dark() -> None:
    report = checked(numpy.zeros((640, 640, 3), numpy.uint8))
    assert (report.ok, report.reason) == (False, "too_dark")
    assert report.metrics["brightness"] == 0.0
    assert report.metrics["dark_fraction"] == 1.0


def test_white_image_is_too_bright() -> None:
    report = checked(numpy.full((640, 640, 3), 255, numpy.uint8))
    assert report.reason == "too_bright"
    assert report.metrics["bright_fraction"] == 1.0


# --- ACNE04 ---------------------------------------------------------------------------------------


def acne04_sample(count: int) -> list[Path]:
    photos = acne04("valid")
    return photos[:: max(1, len(photos) // count)][:count]


def test_acne04_valid_photos_pass_every_check() -> None:
    # Measured: 283/283 (100 %) of valid and 990/991 (99.9 %) of train pass; the train photo
    # refused (levle3_37, not_enough_skin) has its skin tinted purple-grey by the light.
    photos = acne04("valid")
    failed = {}
    for path in photos:
        report = checked(path.read_bytes())
        if not report.ok:
            failed[path.name] = report.reason
    assert len(photos) >= 250
    assert 1 - len(failed) / len(photos) >= 0.99, failed


def test_blurred_acne04_photo_is_too_blurry() -> None:
    for path in acne04_sample(6):
        face = Image.open(path).convert("RGB")
        assert checked(path.read_bytes()).ok
        blurred = numpy.asarray(face.filter(ImageFilter.GaussianBlur(3)))
        assert checked(blurred).reason == "too_blurry", path.name


def test_over_exposed_acne04_photo_is_too_bright() -> None:
    for path in acne04_sample(6):
        face = numpy.asarray(Image.open(path).convert("RGB"), numpy.float32)
        blown = numpy.clip(face * 3.0 + 60.0, 0, 255).astype(numpy.uint8)
        assert checked(blown).reason == "too_bright", path.name


def test_under_exposed_acne04_photo_is_too_dark() -> None:
    for path in acne04_sample(6):
        face = numpy.asarray(Image.open(path).convert("RGB"), numpy.float32)
        assert checked((face * 0.12).astype(numpy.uint8)).reason == "too_dark", path.name


def test_sharpness_does_not_depend_on_resolution() -> None:
    for path in acne04_sample(4):
        face = Image.open(path).convert("RGB")
        small = check_photo(numpy.asarray(face)).metrics["sharpness"]
        large = check_photo(numpy.asarray(face.resize((1024, 1024), Image.Resampling.BICUBIC))).metrics[
            "sharpness"
        ]
        assert 0.6 < large / small < 1.4, path.name


def test_checks_are_fast() -> None:
    rgb = load_photo(acne04_sample(1)[0].read_bytes()).rgb
    check_photo(rgb)
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        check_photo(rgb)
        timings.append(time.perf_counter() - started)
    # ~8 ms on an idle core; generous, since the machine running the tests may be busy.
    assert sorted(timings)[len(timings) // 2] < 0.06


# --- report and reasons ---------------------------------------------------------------------------


def test_report_metrics_and_json() -> None:
    report = checked(wall_with_switch(3))
    for name in (
        "width",
        "height",
        "sharpness",
        "brightness",
        "dark_fraction",
        "bright_fraction",
        "skin_fraction",
    ):
        assert isinstance(report.metrics[name], float)
    assert (report.metrics["width"], report.metrics["height"]) == (640.0, 640.0)
    as_dict = report.to_dict()
    assert as_dict["ok"] is False and as_dict["reason"] == "not_enough_skin"
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["skin_fraction"] == round(report.metrics["skin_fraction"], 4)


def test_check_photo_wants_rgb_uint8() -> None:
    with pytest.raises(ValueError):
        check_photo(numpy.zeros((64, 64), numpy.uint8))


PHOTO_CODES = (
    "empty_file",
    "file_too_large",
    "unsupported_format",
    "corrupt_image",
    "too_many_pixels",
    "too_small",
)


@pytest.mark.parametrize("code", [*PHOTO_CODES, *CHECKS, "not_assessable"])
def test_every_code_is_explained_in_chinese_and_english(code: str) -> None:
    assert code in REASONS
    what_zh, how_zh = explain(code, "zh")
    what_en, how_en = explain(code, "en")
    for text in (what_zh, how_zh):  # Chinese sentences (product names such as iPhone aside)
        assert len(re.findall(r"[\u4e00-\u9fff]", text)) > 2 * len(re.findall(r"[A-Za-z]", text)), text
    for text in (what_en, how_en):
        assert not re.search(r"[\u4e00-\u9fff]", text) and text[0].isupper() and text.endswith("."), text
    assert explain(code, "zh-CN") == (what_zh, how_zh)
    assert explain(code, "fr") == (what_en, how_en)


def test_explain_examples_and_unknown_code() -> None:
    assert explain("too_dark", "en") == (
        "The photo is too dark.",
        "Face a window or a lamp, so the light falls evenly on your face, and retake it.",
    )
    assert "皮肤科医生" in explain("not_assessable", "zh")[1]
    assert "dermatologist" in explain("not_assessable", "en")[1]
    what, how = explain("something_new", "en")
    assert what and how
