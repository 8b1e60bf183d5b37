"""The lesion overlay: a clean JPEG with a ring of the type's colour around every lesion."""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass

import numpy
import pytest
from numpy.typing import NDArray
from PIL import Image

from ehospital.skin.overlay import KIND_COLOURS, draw_overlay

RGB = NDArray[numpy.uint8]


@dataclass(frozen=True)
class Spot:
    """Shaped like ehospital.skin.model.Lesion (pixels of the analysed photo)."""

    x: float
    y: float
    radius: float
    kind: str
    score: float = 0.9


def skin(width: int, height: int, tone: tuple[int, int, int]) -> RGB:
    return numpy.full((height, width, 3), tone, numpy.uint8)


def decode(data: bytes) -> RGB:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return numpy.asarray(image.convert("RGB"))


def hex_rgb(colour: str) -> NDArray[numpy.int32]:
    return numpy.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], numpy.int32)


def ring_has(pixels: RGB, x: float, y: float, colour: str, r_min: float, r_max: float) -> float:
    """Share of the angles around (x, y) where a pixel between r_min and r_max has `colour`."""
    target = hex_rgb(colour)
    hits = 0
    angles = numpy.linspace(0, 2 * numpy.pi, 48, endpoint=False)
    for angle in angles:
        found = False
        for r in numpy.arange(r_min, r_max, 0.5):
            px, py = round(x + r * numpy.cos(angle)), round(y + r * numpy.sin(angle))
            inside = 0 <= py < pixels.shape[0] and 0 <= px < pixels.shape[1]
            if inside and numpy.abs(pixels[py, px].astype(numpy.int32) - target).max() < 70:
                found = True
                break
        hits += found
    return hits / len(angles)


SPOTS = [
    Spot(300, 250, 8, "comedone"),
    Spot(450, 300, 10, "papule"),
    Spot(350, 420, 12, "pustule"),
    Spot(550, 450, 16, "nodule_cyst"),
]


def test_kind_colours_cover_the_four_lesion_types() -> None:
    assert set(KIND_COLOURS) == {"comedone", "papule", "pustule", "nodule_cyst"}
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in KIND_COLOURS.values())
    assert len(set(KIND_COLOURS.values())) == 4


@pytest.mark.parametrize("tone", [(236, 200, 180), (198, 134, 96), (96, 60, 42), (58, 36, 28)])
def test_each_lesion_is_ringed_in_its_colour_on_every_skin_tone(tone: tuple[int, int, int]) -> None:
    photo = skin(800, 600, tone)
    pixels = decode(draw_overlay(photo, SPOTS))
    assert pixels.shape == (600, 800, 3)
    for spot in SPOTS:
        # The ring sits just outside the lesion, all the way round.
        assert ring_has(pixels, spot.x, spot.y, KIND_COLOURS[spot.kind], spot.radius, spot.radius + 8) > 0.9
        # ... and is not filled: the lesion itself stays visible.
        centre = pixels[int(spot.y), int(spot.x)].astype(int)
        assert numpy.abs(centre - numpy.array(tone)).max() < 12
    # Far from any lesion and the legend the photo is untouched.
    assert (
        numpy.abs(pixels[120, 700].astype(int) - numpy.array(tone)).max() < 12
        or numpy.abs(pixels[560, 60].astype(int) - numpy.array(tone)).max() < 12
    )


def test_coordinates_are_scaled_when_the_photo_is_shrunk() -> None:
    photo = skin(2048, 1536, (210, 160, 140))
    spot = Spot(1200, 800, 20, "papule")
    pixels = decode(draw_overlay(photo, [spot], max_side=1024))
    assert pixels.shape == (768, 1024, 3)
    assert ring_has(pixels, 600, 400, KIND_COLOURS["papule"], 10, 18) > 0.9
    assert ring_has(pixels, 1200 / 2 + 100, 400, KIND_COLOURS["papule"], 10, 18) < 0.2


def test_legend_is_drawn_in_the_corner_with_fewest_lesions() -> None:
    photo = skin(800, 600, (210, 160, 140))
    crowded_top_left = [Spot(20 + 15 * i, 20 + 10 * i, 5, "comedone") for i in range(6)]
    pixels = decode(draw_overlay(photo, crowded_top_left)).astype(int)
    corners = {
        "top_right": pixels[5:60, -160:-5],
        "bottom_left": pixels[-60:-5, 5:160],
        "bottom_right": pixels[-60:-5, -160:-5],
    }
    darkened = [name for name, region in corners.items() if region.mean() < 150]
    assert darkened == ["top_right"]  # the first corner free of lesions gets the dimmed panel


def test_no_lesions_and_unknown_kinds() -> None:
    photo = skin(640, 480, (200, 150, 130))
    assert decode(draw_overlay(photo, [])).shape == (480, 640, 3)
    pixels = decode(draw_overlay(photo, [Spot(320, 240, 10, "milium")]))
    assert ring_has(pixels, 320, 240, "#FFFFFF", 10, 18) > 0.9


def test_output_has_no_metadata() -> None:
    data = draw_overlay(skin(640, 480, (200, 150, 130)), SPOTS)
    assert data[:3] == b"\xff\xd8\xff"
    assert b"Exif" not in data[:4096] and b"ICC_PROFILE" not in data[:4096]


def test_rejects_non_rgb_arrays() -> None:
    with pytest.raises(ValueError):
        draw_overlay(numpy.zeros((10, 10), numpy.uint8), [])


def test_overlay_is_fast() -> None:
    photo = skin(1024, 1024, (200, 150, 130))
    spots = [
        Spot(50 + (i * 97) % 900, 50 + (i * 61) % 900, 6 + i % 10, list(KIND_COLOURS)[i % 4])
        for i in range(80)
    ]
    draw_overlay(photo, spots)
    timings = []
    for _ in range(10):
        started = time.perf_counter()
        draw_overlay(photo, spots)
        timings.append(time.perf_counter() - started)
    # ~8 ms on an idle core; generous, since the machine running the tests may be busy.
    assert sorted(timings)[len(timings) // 2] < 0.06
