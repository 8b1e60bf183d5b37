"""ACNE04 photos with Pascal VOC lesion boxes: parsing, the data manifest, augmentation, density targets.

Needs numpy and PIL only (no torch), so the evaluation can use it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ehospital.skin.model import LESION_TYPES, resize_for_model

# The exporter's type names (relabelled by the Roboflow uploader, unverified) → our lesion types.
TYPE_NAMES: dict[str, str] = {
    "whitehead and blackhead": "comedone",
    "papules": "papule",
    "pustules": "pustule",
    "nodules and cysts": "nodule_cyst",
}
_GRADE = re.compile(r"^levle([0-3])_")
SIGMA_MIN_CELLS = 1.0  # the Gaussian of a lesion is at least one cell of the density map wide


@dataclass(frozen=True)
class Sample:
    """One photo: its path, Hayashi grade, lesion boxes (x0, y0, x1, y1 in pixels) and type indices."""

    path: Path
    grade: int
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32
    types: np.ndarray  # (N,) int64, indices into LESION_TYPES

    @property
    def count(self) -> int:
        return len(self.types)

    def counts_by_type(self) -> list[int]:
        return [int((self.types == t).sum()) for t in range(len(LESION_TYPES))]


def parse_voc(xml_path: Path) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(width, height, boxes, types) of a Pascal VOC annotation; unknown type names are an error."""
    root = ET.parse(xml_path).getroot()
    width = int(float(root.findtext("size/width", "0")))
    height = int(float(root.findtext("size/height", "0")))
    boxes: list[list[float]] = []
    types: list[int] = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in TYPE_NAMES:
            raise ValueError(f"{xml_path}: unknown lesion type {name!r}")
        box = [float(obj.findtext(f"bndbox/{k}", "nan")) for k in ("xmin", "ymin", "xmax", "ymax")]
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"{xml_path}: incomplete box")
        boxes.append(box)
        types.append(LESION_TYPES.index(TYPE_NAMES[name]))
    return (
        width,
        height,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(types, dtype=np.int64),
    )


def read_split(data: Path, split: str) -> list[Sample]:
    """Every `levleN_*.jpg` of `data/split` with its .xml, sorted by file name."""
    folder = data / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    samples = []
    for image in sorted(folder.glob("*.jpg")):
        match = _GRADE.match(image.name)
        if match is None:
            continue
        width, height, boxes, types = parse_voc(image.with_suffix(".xml"))
        samples.append(Sample(image, int(match.group(1)), width, height, boxes, types))
    if not samples:
        raise FileNotFoundError(f"no levleN_*.jpg photos in {folder}")
    return samples


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_entries(samples: list[Sample], data: Path, role: str) -> list[dict[str, object]]:
    """One entry per photo: path relative to `data`, sha256 of image and annotation, grade, counts."""
    entries: list[dict[str, object]] = []
    for s in samples:
        entries.append(
            {
                "path": s.path.relative_to(data).as_posix(),
                "sha256": sha256_file(s.path),
                "annotation_sha256": sha256_file(s.path.with_suffix(".xml")),
                "role": role,
                "grade": s.grade,
                "lesions": s.count,
                "by_type": dict(zip(LESION_TYPES, s.counts_by_type(), strict=True)),
            }
        )
    return entries


def manifest_digest(entries: list[dict[str, object]]) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def split_holdout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (fit, held out): `fraction` of each grade held out, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    fit: list[int] = []
    held: list[int] = []
    for grade in range(4):
        members = [i for i, s in enumerate(samples) if s.grade == grade]
        order = rng.permutation(len(members))
        n_held = round(len(members) * fraction)
        held += [members[j] for j in order[:n_held]]
        fit += [members[j] for j in order[n_held:]]
    return sorted(fit), sorted(held)


@dataclass(frozen=True)
class View:
    """A photo as the network sees it: S×S×3 uint8, lesion centres (pixels), sizes (pixels), types."""

    image: np.ndarray
    centres: np.ndarray  # (N, 2) float32, x and y
    sizes: np.ndarray  # (N,) float32, sqrt(box width × height)
    types: np.ndarray  # (N,) int64


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def make_view(
    sample: Sample,
    rgb: np.ndarray,
    size: int,
    rng: np.random.Generator | None = None,
    flip: bool = False,
) -> View:
    """The photo stretched to size×size like at serving; with `rng`, randomly augmented.

    Augmentation: horizontal flip, scale 0.85–1.2, rotation ±10°, shift ±5 %, brightness, contrast,
    saturation and white-balance jitter. Boxes follow the geometry; a lesion whose centre leaves
    the picture is dropped.
    """
    base = resize_for_model(rgb, size)
    sx, sy = size / sample.width, size / sample.height
    centres = np.stack(
        [
            (sample.boxes[:, 0] + sample.boxes[:, 2]) / 2 * sx,
            (sample.boxes[:, 1] + sample.boxes[:, 3]) / 2 * sy,
        ],
        axis=1,
    ).astype(np.float64)
    sizes = np.sqrt(
        np.clip(sample.boxes[:, 2] - sample.boxes[:, 0], 1, None)
        * sx
        * np.clip(sample.boxes[:, 3] - sample.boxes[:, 1], 1, None)
        * sy
    ).astype(np.float64)
    types = sample.types.copy()
    if rng is None:
        if flip:
            base = base[:, ::-1].copy()
            centres[:, 0] = size - centres[:, 0]
        return View(base, centres.astype(np.float32), sizes.astype(np.float32), types)

    flip = bool(rng.random() < 0.5)
    scale = float(np.exp(rng.uniform(np.log(0.85), np.log(1.2))))
    angle = math.radians(float(rng.uniform(-10.0, 10.0)))
    shift = rng.uniform(-0.05, 0.05, size=2) * size
    # forward map q = scale · R · F · (p − c) + c + shift, about the centre c of the picture
    cos, sin = math.cos(angle), math.sin(angle)
    forward = scale * np.array([[cos, -sin], [sin, cos]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
    inverse = np.linalg.inv(forward)
    c = np.array([size / 2, size / 2])
    offset = c - inverse @ (c + shift)  # p = inverse · q + offset
    image = Image.fromarray(base).transform(
        (size, size),
        Image.Transform.AFFINE,
        (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1]),
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    moved = (centres - c) @ forward.T + c + shift
    inside = (moved[:, 0] >= 0) & (moved[:, 0] < size) & (moved[:, 1] >= 0) & (moved[:, 1] < size)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = _jitter_colour(pixels, rng)
    return View(
        np.clip(pixels + 0.5, 0, 255).astype(np.uint8),
        moved[inside].astype(np.float32),
        (sizes[inside] * scale).astype(np.float32),
        types[inside],
    )


def _jitter_colour(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    brightness = rng.uniform(0.75, 1.25)
    contrast = rng.uniform(0.75, 1.25)
    saturation = rng.uniform(0.75, 1.25)
    balance = rng.uniform(0.93, 1.07, size=3)
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    pixels = grey[..., None] + (pixels - grey[..., None]) * saturation
    pixels = (pixels - grey.mean()) * contrast + grey.mean()
    return np.asarray(pixels * brightness * balance, dtype=np.float32)


def density_target(view: View, size: int, stride: int) -> np.ndarray:
    """(4, size/stride, size/stride) float32: a Gaussian per lesion on its type's map, each summing to 1.

    Sigma is a quarter of the lesion's box size, at least SIGMA_MIN_CELLS cells.
    """
    cells = size // stride
    target = np.zeros((len(LESION_TYPES), cells, cells), dtype=np.float32)
    grid = (np.arange(cells, dtype=np.float64) + 0.5) * stride
    for (x, y), s, t in zip(view.centres, view.sizes, view.types, strict=True):
        sigma = max(SIGMA_MIN_CELLS * stride, 0.25 * float(s))
        gx = np.exp(-((grid - float(x)) ** 2) / (2 * sigma**2))
        gy = np.exp(-((grid - float(y)) ** 2) / (2 * sigma**2))
        blob = np.outer(gy, gx)
        total = blob.sum()
        if total > 0:
            target[int(t)] += (blob / total).astype(np.float32)
    return target


def render_views(
    sample: Sample, size: int, stride: int, views: int, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(images (V, S, S, 3) uint8, density targets (V, 4, S/stride, S/stride)) of one photo.

    View 0 is the plain photo, view 1 its mirror image, the others random augmentations drawn
    with the generator seeded by (seed, index, view), so the result does not depend on which
    process renders it.
    """
    rgb = load_rgb(sample.path)
    images, targets = [], []
    for v in range(views):
        if v < 2:
            view = make_view(sample, rgb, size, flip=v == 1)
        else:
            view = make_view(sample, rgb, size, rng=np.random.default_rng([seed, index, v]))
        images.append(view.image)
        targets.append(density_target(view, size, stride))
    return np.stack(images), np.stack(targets)
