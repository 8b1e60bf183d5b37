"""The photo with each lesion the model found ringed in its type's colour, and a legend with the
count per type, as a JPEG without metadata (what the patient and the dermatologist see)."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

# One colour per lesion type, saturated hues that skin of any tone does not have; every ring also
# gets a thin dark halo, so it stands out on pale and on dark skin alike. Web pages draw the same
# legend from this table.
KIND_COLOURS: dict[str, str] = {
    "comedone": "#00E5FF",  # cyan
    "papule": "#FFEA00",  # yellow
    "pustule": "#00E676",  # green
    "nodule_cyst": "#FF40FF",  # magenta
}
KIND_LABELS: dict[str, str] = {
    "comedone": "comedone",
    "papule": "papule",
    "pustule": "pustule",
    "nodule_cyst": "nodule/cyst",
}
OTHER_COLOUR = "#FFFFFF"
HALO_COLOUR = "#1A1A1A"
JPEG_QUALITY = 85


class LesionLike(Protocol):
    """What the overlay needs of a lesion: centre and radius in pixels of the photo, and its type."""

    @property
    def x(self) -> float: ...

    @property
    def y(self) -> float: ...

    @property
    def radius(self) -> float: ...

    @property
    def kind(self) -> str: ...


def draw_overlay(rgb: NDArray[numpy.uint8], lesions: Sequence[LesionLike], *, max_side: int = 1024) -> bytes:
    """A JPEG of the photo (long side at most `max_side`) with a ring around every lesion and a
    legend of the counts per type in the corner with the fewest lesions."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != numpy.uint8:
        raise ValueError(f"expected an H×W×3 uint8 array, got {rgb.shape} {rgb.dtype}")
    image = Image.fromarray(rgb)
    scale = 1.0
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    side = max(image.size)
    width = 2 if side < 800 else 3
    draw = ImageDraw.Draw(image)
    for lesion in lesions:
        cx, cy = lesion.x * scale, lesion.y * scale
        # The ring sits just outside the lesion, so it never hides what it marks.
        r = max(lesion.radius * scale, 3.0) + width + 1
        colour = KIND_COLOURS.get(lesion.kind, OTHER_COLOUR)
        draw.ellipse((cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1), outline=HALO_COLOUR, width=width + 2)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=width)
    _legend(image, lesions, scale)
    out = io.BytesIO()
    # 4:4:4 chroma: with the default 4:2:0 thin coloured rings bleed into the skin around them.
    image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def _legend(image: Image.Image, lesions: Sequence[LesionLike], scale: float) -> None:
    """Counts per type on a dimmed panel, in the corner that covers the fewest lesions."""
    counts = Counter(lesion.kind for lesion in lesions)
    rows = [(KIND_LABELS[kind], colour, counts.get(kind, 0)) for kind, colour in KIND_COLOURS.items()]
    other = sum(n for kind, n in counts.items() if kind not in KIND_COLOURS)
    if other:
        rows.append(("other", OTHER_COLOUR, other))
    size = max(13, round(max(image.size) / 40))
    font = ImageFont.load_default(size=size)
    line = round(size * 1.35)
    pad = round(size * 0.5)
    swatch = round(size * 0.8)
    label_width = max(int(font.getlength(label)) for label, _, _ in rows)
    count_width = max(int(font.getlength(str(n))) for _, _, n in rows)
    box_w = pad + swatch + pad + label_width + pad * 2 + count_width + pad
    box_h = pad + line * len(rows) + pad // 2
    margin = pad
    corners = [
        (margin, margin),
        (image.width - box_w - margin, margin),
        (margin, image.height - box_h - margin),
        (image.width - box_w - margin, image.height - box_h - margin),
    ]

    def covered(corner: tuple[int, int]) -> int:
        left, top = corner
        return sum(
            1
            for lesion in lesions
            if left - 8 <= lesion.x * scale <= left + box_w + 8
            and top - 8 <= lesion.y * scale <= top + box_h + 8
        )

    left, top = min(corners, key=covered)
    left, top = max(0, left), max(0, top)
    box = (left, top, min(image.width, left + box_w), min(image.height, top + box_h))
    panel = image.crop(box)
    image.paste(Image.blend(panel, Image.new("RGB", panel.size, (0, 0, 0)), 0.6), box[:2])
    draw = ImageDraw.Draw(image)
    for i, (label, colour, n) in enumerate(rows):
        y = top + pad + i * line
        mid = y + line // 2 - 1
        sx = left + pad
        draw.ellipse(
            (sx, mid - swatch // 2, sx + swatch, mid + swatch // 2), outline=colour, width=max(2, swatch // 5)
        )
        draw.text((sx + swatch + pad, mid), label, font=font, fill="#FFFFFF", anchor="lm")
        draw.text((left + box_w - pad, mid), str(n), font=font, fill="#FFFFFF", anchor="rm")
