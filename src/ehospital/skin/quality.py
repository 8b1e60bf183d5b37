"""Is a photo good enough for the acne model? Exposure, sharpness and "is there a face's skin"
checks on small copies of the photo (a few ms), with the patient-facing reasons in zh and en."""

from __future__ import annotations

from dataclasses import dataclass

import numpy
from numpy.typing import NDArray
from PIL import Image

Grey = NDArray[numpy.float32]

# ---------------------------------------------------------------------------------------------
# Thresholds, calibrated with `measure` on the 991 + 283 ACNE04 photos (acne04/{train,valid}:
# 640×640 close-up faces, dim, rotated, upscaled and pale or purple-tinted copies among them),
# on altered copies of 150 of them (blurred, under- and over-exposed), and on synthetic negatives
# (4 each): painted walls in beige, peach, pink, tan, apricot and sand with roller texture,
# lighting gradients, warm light and sensor noise; plain and grey walls; red brick; wood; sand;
# cardboard; a page of text; a landscape; a peach wall with a light switch and a brown floor.
# With these values 990/991 train (99.9 %) and 283/283 valid (100 %) photos pass every check, and
# every synthetic negative is refused: not_enough_skin, except a grain-only (smooth) wood texture,
# too_blurry. tests/test_skin_quality.py rebuilds most of them.
# ---------------------------------------------------------------------------------------------

# too_dark: the 95th percentile of luma (0–255), "even the lit part of the photo is dark".
# ACNE04: min 74, p0.5 102 (the darkest have a dim face on black, mean luma 19, lesions visible).
# At ×0.25 exposure the same photos have a median of 46 (110/150 refused); at ×0.15 at most 35.
DARK_HIGHLIGHTS = 50.0
# too_bright: share of the lit pixels (luma ≥ 40) that are clipped white (luma ≥ 245).
# ACNE04: p99.5 0.087, max 0.36 (a face against a blown-out white wall). At ×2.5 exposure the
# median is 0.50 (117/150 refused), at ×3 138/150 are refused.
BRIGHT_CLIPPED = 0.40
# too_blurry: fine detail (variance of the Laplacian of a 384-px grey copy) over the square of
# the coarse contrast (mean gradient of a 64-px grey copy): dimensionless, so it holds at any
# resolution, exposure or contrast. ACNE04: min 0.167, p0.5 0.28, median 1.6. Blurred with a
# Gaussian of σ = 1.5 px (at 640 px): median 0.12 (115/150 refused); σ = 2 px: max 0.175
# (149/150 refused); σ = 3 px: max 0.09.
BLURRY_SHARPNESS = 0.14
# Below this coarse contrast (mean grey-level step between neighbouring pixels of the 64-px copy)
# there are no edges to judge sharpness by (a plain wall): the skin checks refuse such a photo.
# ACNE04: min 4.9 (4.4 even blurred with σ = 8 px); plain and painted walls 1.1–4.2.
FEATURELESS_CONTRAST = 2.0
# not_enough_skin: a face photo meets all three conditions below.
# 1. skin_fraction: share of pixels of skin colour (Chai & Ngan: 133 ≤ Cr ≤ 173, 77 ≤ Cb ≤ 127,
#    with luma 30–250). ACNE04: p0.5 0.15, min 0.026 (the one photo refused: skin tinted purple
#    by the light). A page of text, grey walls, landscapes: 0.00.
SKIN_FRACTION = 0.08
# 2. skin_structure: what a smooth lighting field (a quadratic surface fitted to log-luma on a
#    32-px copy) cannot explain: eyes, brows, nostrils, lips, hair, the outline of a face. A wall,
#    however textured, is lit smoothly. ACNE04: min 0.158, p0.5 0.19. Painted walls ≤ 0.04, wood
#    ≤ 0.07, brick ≤ 0.10 (a wall with a light switch and a floor: 0.13–0.16, refused by 3.).
SKIN_STRUCTURE = 0.12
# 3. skin_texture: chromatic detail inside the skin (mean |r − local mean of r| + the same for g,
#    normalised chromaticities r = R/(R+G+B), 9×9 window of a 128-px copy, ×100): pores, lesions,
#    lips, the edges of brows and eyes; intensity-free, so shading does not count. Paint has one
#    colour. ACNE04: min 0.445, p0.5 0.52. Painted walls ≤ 0.20, with heavy sensor noise ≤ 0.34,
#    wood ≤ 0.33, the wall with a switch ≤ 0.29, cardboard ≤ 0.26.
SKIN_TEXTURE = 0.40
#    ... and at most this: a mosaic of differently coloured patches (brick, tiles) is not skin.
#    ACNE04: max 4.5, p99.5 3.1; red brick walls 6.8–7.4.
SKIN_TEXTURE_MAX = 5.5

CHECKS = ("too_dark", "too_bright", "too_blurry", "not_enough_skin")

# Sizes (long side, px) of the copies each measure works on; fixed, so thresholds hold at any
# resolution.
_COLOUR_SIDE = 256
_SHARP_SIDE = 384
_COARSE_SIDE = 64
_TEXTURE_SIDE = 128
_STRUCTURE_SIDE = 32


@dataclass(frozen=True)
class QualityReport:
    """The outcome of the checks: `reason` is the first that failed (None when `ok`)."""

    ok: bool
    reason: str | None
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ok, reason and the metrics rounded to 4 significant decimals."""
        rounded = {name: round(value, 4) for name, value in self.metrics.items()}
        return {"ok": self.ok, "reason": self.reason, **rounded}


def check_photo(rgb: NDArray[numpy.uint8]) -> QualityReport:
    """Run the checks in order: too_dark, too_bright, too_blurry, not_enough_skin."""
    metrics = measure(rgb)
    reason: str | None = None
    if metrics["highlights"] < DARK_HIGHLIGHTS:
        reason = "too_dark"
    elif metrics["bright_fraction"] > BRIGHT_CLIPPED:
        reason = "too_bright"
    elif metrics["contrast"] >= FEATURELESS_CONTRAST and metrics["sharpness"] < BLURRY_SHARPNESS:
        reason = "too_blurry"
    elif (
        metrics["skin_fraction"] < SKIN_FRACTION
        or metrics["skin_structure"] < SKIN_STRUCTURE
        or not SKIN_TEXTURE <= metrics["skin_texture"] <= SKIN_TEXTURE_MAX
    ):
        reason = "not_enough_skin"
    return QualityReport(ok=reason is None, reason=reason, metrics=metrics)


def measure(rgb: NDArray[numpy.uint8]) -> dict[str, float]:
    """Every metric of a photo (H×W×3 uint8, any size), as floats."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != numpy.uint8:
        raise ValueError(f"expected an H×W×3 uint8 array, got {rgb.shape} {rgb.dtype}")
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    image = Image.fromarray(rgb)
    colour = _shrink(image, _COLOUR_SIDE)
    small = numpy.asarray(colour, dtype=numpy.float32)
    luma = _luma(small)
    cr = (small[..., 0] - luma) * 0.713 + 128.0
    cb = (small[..., 2] - luma) * 0.564 + 128.0

    lit = luma >= 40.0
    clipped = luma >= 245.0
    skin = (cr >= 133.0) & (cr <= 173.0) & (cb >= 77.0) & (cb <= 127.0) & (luma >= 30.0) & (luma <= 250.0)

    grey_fine = _grey(_shrink(image.convert("L"), _SHARP_SIDE))
    grey_coarse = _grey(_shrink(colour.convert("L"), _COARSE_SIDE))
    contrast = float(_gradient(grey_coarse).mean())
    sharpness = float(_laplacian(grey_fine).var()) / (contrast * contrast + 1.0)

    return {
        "width": float(width),
        "height": float(height),
        "brightness": float(luma.mean()),
        "highlights": float(numpy.percentile(luma, 95)),
        "dark_fraction": float((luma < 20.0).mean()),
        "bright_fraction": float(clipped.sum() / max(int(lit.sum()), 1)),
        "sharpness": sharpness,
        "contrast": contrast,
        "skin_fraction": float(skin.mean()),
        "skin_structure": _structure(_grey(_shrink(colour.convert("L"), _STRUCTURE_SIDE))),
        "skin_texture": _texture(numpy.asarray(_shrink(colour, _TEXTURE_SIDE), dtype=numpy.float32)),
    }


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """A copy whose long side is `side` (at least 3 px each way): area averaging when it shrinks,
    bilinear when it grows."""
    width, height = image.size
    ratio = side / max(width, height)
    size = (max(3, round(width * ratio)), max(3, round(height * ratio)))
    if size == image.size:
        return image
    method = Image.Resampling.BOX if ratio < 1 else Image.Resampling.BILINEAR
    return image.resize(size, method)


def _grey(image: Image.Image) -> Grey:
    return numpy.asarray(image, dtype=numpy.float32)


def _luma(rgb: Grey) -> Grey:
    """BT.601 luma, as JPEG uses."""
    out: Grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return out


def _laplacian(grey: Grey) -> Grey:
    out: Grey = 4.0 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return out


def _gradient(grey: Grey) -> Grey:
    out: Grey = numpy.hypot(numpy.diff(grey, axis=0)[:, :-1], numpy.diff(grey, axis=1)[:-1, :])
    return out


def _box_mean(values: Grey, radius: int) -> Grey:
    """Mean over a (2r+1)² window, edges repeated (summed-area table)."""
    n = 2 * radius + 1
    padded = numpy.pad(values, radius, mode="edge")
    table = numpy.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype=numpy.float64)
    table[1:, 1:] = padded.cumsum(axis=0).cumsum(axis=1)
    sums = table[n:, n:] - table[:-n, n:] - table[n:, :-n] + table[:-n, :-n]
    out: Grey = (sums / (n * n)).astype(numpy.float32)
    return out


def _structure(grey: Grey) -> float:
    """Residual spread of log-luma after the best quadratic lighting surface."""
    rows, cols = grey.shape
    y, x = numpy.mgrid[0:rows, 0:cols]
    y = y / max(rows - 1, 1) - 0.5
    x = x / max(cols - 1, 1) - 0.5
    design = numpy.stack([numpy.ones_like(x), x, y, x * x, y * y, x * y], axis=-1).reshape(-1, 6)
    target = numpy.log(grey.reshape(-1).astype(numpy.float64) + 8.0)
    coef, *_ = numpy.linalg.lstsq(design, target, rcond=None)
    return float((target - design @ coef).std())


def _texture(rgb: Grey) -> float:
    """Mean local chromatic detail (×100) over the skin-coloured pixels; 0 without skin."""
    luma = _luma(rgb)
    cr = (rgb[..., 0] - luma) * 0.713 + 128.0
    cb = (rgb[..., 2] - luma) * 0.564 + 128.0
    skin = (cr >= 133.0) & (cr <= 173.0) & (cb >= 77.0) & (cb <= 127.0) & (luma >= 30.0) & (luma <= 250.0)
    if int(skin.sum()) < 16:
        return 0.0
    total = rgb.sum(axis=2) + 3.0
    detail = numpy.zeros(luma.shape, dtype=numpy.float32)
    for channel in (0, 1):
        chroma: Grey = (rgb[..., channel] + 1.0) / total
        detail += numpy.abs(chroma - _box_mean(chroma, 4))
    return float(detail[skin].mean() * 100.0)


# What is wrong and how to retake, for every code load_photo and check_photo give, plus the
# model's not_assessable. Plain words a patient understands; simplified Chinese and English.
REASONS: dict[str, dict[str, tuple[str, str]]] = {
    "empty_file": {
        "zh": ("文件是空的。", "请重新选择照片或重新拍一张，再上传。"),
        "en": ("The file is empty.", "Choose the photo again, or take a new one, and send it."),
    },
    "file_too_large": {
        "zh": ("文件太大了。", "请上传手机相机直接拍摄的照片，或者重新拍一张。"),
        "en": (
            "The file is too large.",
            "Send the photo just as your phone's camera took it, or take a new one.",
        ),
    },
    "unsupported_format": {
        "zh": (
            "无法识别这个文件，我们只接受照片。",
            "请上传 JPG、PNG 或 WebP 格式的照片。使用 iPhone 的话，可以在“设置 › 相机 › 格式”中"
            "选择“兼容性最佳”后重新拍摄。",
        ),
        "en": (
            "This file is not a photo we can read.",
            "Send a JPEG, PNG or WebP photo. On an iPhone, choose Settings > Camera > Formats > "
            "Most Compatible, then take the photo again.",
        ),
    },
    "corrupt_image": {
        "zh": ("照片已损坏，无法打开。", "请重新拍一张再上传。"),
        "en": (
            "The photo is damaged and cannot be opened.",
            "Please take the photo again and send the new one.",
        ),
    },
    "too_many_pixels": {
        "zh": ("图片尺寸过大，远超普通手机照片。", "请上传手机相机拍摄的普通照片。"),
        "en": (
            "The picture is far larger than a phone photo.",
            "Send an ordinary photo from your phone's camera.",
        ),
    },
    "too_small": {
        "zh": (
            "照片太小，看不清皮肤的细节。",
            "请用手机相机重新拍摄，不要发送缩略图或截图；拍摄时手机离脸约 30 厘米。",
        ),
        "en": (
            "The photo is too small to show your skin in detail.",
            "Take a new photo with your phone's camera rather than sending a thumbnail or a "
            "screenshot; hold the phone about 30 cm from your face.",
        ),
    },
    "too_dark": {
        "zh": ("照片太暗了。", "请面向窗户或灯光，让光线均匀地照在脸上，然后重新拍摄。"),
        "en": (
            "The photo is too dark.",
            "Face a window or a lamp, so the light falls evenly on your face, and retake it.",
        ),
    },
    "too_bright": {
        "zh": (
            "照片太亮了，部分皮肤曝光过度，看不清楚。",
            "请避开阳光直射，关闭闪光灯，在窗边柔和的自然光下重新拍摄。",
        ),
        "en": (
            "The photo is too bright: parts of your skin are washed out.",
            "Move out of direct sunlight and turn the flash off; soft daylight from a window is "
            "best. Then retake it.",
        ),
    },
    "too_blurry": {
        "zh": (
            "照片有些模糊。",
            "请先擦干净镜头，手机离脸约 30 厘米并拿稳，在屏幕上点一下脸颊对焦，稍等一下再拍。",
        ),
        "en": (
            "The photo is blurry.",
            "Wipe the camera lens, hold the phone steady about 30 cm from your face, tap your "
            "cheek on the screen to focus, wait a moment, then take the photo.",
        ),
    },
    "not_enough_skin": {
        "zh": (
            "照片里看不到足够的面部皮肤。",
            "请靠近拍摄长痘的部位，让脸（或脸颊、额头、下巴）占满画面的大部分；"
            "不要让头发或口罩挡住，也不要用美颜或滤镜。",
        ),
        "en": (
            "We can't see enough of your face in the photo.",
            "Take a close-up of the affected area, so your face (or cheek, forehead or chin) "
            "fills most of the picture, with no hair or mask covering it and no beauty filter.",
        ),
    },
    "not_assessable": {
        "zh": (
            "AI 无法评估这张照片：照片里可能不是面部痤疮，也可能是其他皮肤问题。",
            "请在光线充足的地方重新拍摄面部；如果不是痤疮，或者您不确定，可以请我们的皮肤科医生帮您看看。",
        ),
        "en": (
            "The AI cannot assess this photo: it may not show acne on a face, or it may show "
            "another skin condition.",
            "Retake a photo of your face in good light. If your skin problem is not acne, or you "
            "are not sure, ask one of our dermatologists to look at it.",
        ),
    },
}
_FALLBACK: dict[str, tuple[str, str]] = {
    "zh": ("这张照片无法使用。", "请在光线充足的地方重新拍一张面部照片，然后再试一次。"),
    "en": (
        "We could not use this photo.",
        "Please take a new photo of your face in good light and try again.",
    ),
}


def explain(code: str, lang: str) -> tuple[str, str]:
    """(What is wrong, how to retake) for a refusal code, in "zh" or "en" (zh-CN, zh_Hans … are
    Chinese; any other language gets English; an unknown code gets a general sentence)."""
    key = "zh" if lang.lower().replace("_", "-").split("-")[0] == "zh" else "en"
    return REASONS.get(code, _FALLBACK)[key]
