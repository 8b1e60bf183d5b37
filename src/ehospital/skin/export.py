"""The learning loop's way out: consented, dermatologist-confirmed photos and their labels, in
the layout of the ACNE04 training data (`{train,valid}/levle<grade>_<n>.jpg` + Pascal VOC .xml),
so a hospital can retrain the model on its own licensed data with `ehospital skin train`."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.kit.models import utcnow
from ehospital.kit.storage import FileStore
from ehospital.skin.repository import SkinRepository
from ehospital.skin.tables import SkinAnalysis, SkinPhoto, SkinReview

# The type names the training data's exporter used (see the data's README).
VOC_NAMES = {
    "comedone": "whitehead and blackhead",
    "papule": "papules",
    "pustule": "pustules",
    "nodule_cyst": "nodules and cysts",
}


@dataclass(frozen=True)
class ExportResult:
    out: Path
    photos: int
    by_split: dict[str, int]
    skipped_unconfirmed: int


def _voc(filename: str, width: int, height: int, lesions: list[list[Any]]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, dim in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(dim)
    for x, y, radius, kind, *_ in lesions:
        cx, cy, r = float(x) * width, float(y) * height, max(1.0, float(radius) * width)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = VOC_NAMES[str(kind)]
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (
            ("xmin", max(0.0, cx - r)),
            ("xmax", min(width - 1.0, cx + r)),
            ("ymin", max(0.0, cy - r)),
            ("ymax", min(height - 1.0, cy + r)),
        ):
            ET.SubElement(box, tag).text = str(round(value))
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def _split(patient_id: int, valid_share: float) -> str:
    """All photos of one patient go to the same split, so validation sees unseen people."""
    digest = hashlib.sha256(f"ehospital-skin-export:{patient_id}".encode()).digest()
    return "valid" if int.from_bytes(digest[:4], "big") / 2**32 < valid_share else "train"


async def export_dataset(
    session: AsyncSession,
    files: FileStore,
    out: Path,
    *,
    valid_share: float = 0.2,
    since: datetime | None = None,
) -> ExportResult:
    """Write every consented photo whose latest review confirms a grade. Lesions are the
    dermatologist's corrections where given, the AI's otherwise (said per file in the manifest).
    Nothing identifies the patient: no ids, names, dates or metadata; files are numbered."""
    repo = SkinRepository(session)
    rows = await repo.consented(since)
    reviews = await repo.reviews_of([photo.id for photo, _ in rows])  # newest first
    chosen: list[tuple[SkinPhoto, SkinAnalysis, SkinReview | None]] = [
        (photo, analysis, reviews[photo.id][0] if photo.id in reviews else None) for photo, analysis in rows
    ]
    return await asyncio.to_thread(_write, files, out, chosen, valid_share)


def _write(
    files: FileStore,
    out: Path,
    chosen: list[tuple[SkinPhoto, SkinAnalysis, SkinReview | None]],
    valid_share: float,
) -> ExportResult:
    manifest: list[dict[str, Any]] = []
    by_split = {"train": 0, "valid": 0}
    skipped = 0
    for split in by_split:
        (out / split).mkdir(parents=True, exist_ok=True)
    for number, (photo, analysis, review) in enumerate(chosen, start=1):
        if review is None or review.confirmed_grade is None:
            skipped += 1
            continue
        content = files.get(photo.storage_key)
        with Image.open(io.BytesIO(content)) as img:
            width, height = img.size
        corrected = review.lesions is not None
        lesions = json.loads(review.lesions or analysis.lesions) or []
        split = _split(photo.patient_id, valid_share)
        stem = f"levle{review.confirmed_grade}_{number}"
        (out / split / f"{stem}.jpg").write_bytes(content)
        (out / split / f"{stem}.xml").write_bytes(_voc(f"{stem}.jpg", width, height, lesions))
        by_split[split] += 1
        manifest.append(
            {
                "file": f"{split}/{stem}.jpg",
                "sha256": hashlib.sha256(content).hexdigest(),
                "grade": review.confirmed_grade,
                "lesions": len(lesions),
                "lesions_from": "dermatologist" if corrected else "ai_confirmed_grade",
                "diagnosis_code": review.diagnosis_code,
            }
        )
    (out / "manifest.json").write_text(
        json.dumps(
            {"exported_at": utcnow().isoformat(), "photos": manifest, "skipped_unconfirmed": skipped},
            indent=1,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (out / "README.md").write_text(
        "# Acne photos exported by ehospital\n\n"
        "Photos whose patients consented to their use for model improvement, with the grade a "
        "dermatologist confirmed (`levle<grade>_<n>.jpg`) and the lesions in Pascal VOC .xml beside "
        "each photo (the dermatologist's corrections where given; otherwise the AI's lesions, see "
        "`lesions_from` in manifest.json). No names, ids, dates or photo metadata are included, "
        "but a face is identifying: keep this folder inside the hospital and use it only for the "
        "purpose consented to. Retrain with `ehospital skin train --data <this folder>`.\n",
        encoding="utf-8",
    )
    return ExportResult(out, sum(by_split.values()), by_split, skipped)
