"""The committed acne model: metadata, predictions on ACNE04 valid photos, refusal of non-faces."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from ehospital.skin.model import DEFAULT_MODEL, LESION_TYPES, AcneModel, AcnePrediction
from ehospital.skin.training.dataset import load_rgb, manifest_digest, read_split
from ehospital.skin.training.evaluate import synthetic_non_faces

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "skin" / "acne04"


def _valid_photos() -> Path:
    if not (DATA / "valid").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the ACNE04 photos are missing at {DATA}")
        pytest.skip(f"ACNE04 photos not found at {DATA} (../shared/data/skin/acne04)")
    return DATA


@pytest.fixture(scope="module")
def model() -> AcneModel:
    return AcneModel.load()


def _consistent(p: AcnePrediction, width: int, height: int) -> None:
    assert set(p.by_type) == set(LESION_TYPES)
    assert sum(p.by_type.values()) == len(p.lesions) == max(0, round(p.count))
    for kind in LESION_TYPES:
        assert p.by_type[kind] == sum(1 for lesion in p.lesions if lesion.kind == kind)
    for lesion in p.lesions:
        assert 0 <= lesion.x <= width and 0 <= lesion.y <= height
        assert lesion.radius > 0 and 0 <= lesion.score <= 1
    assert abs(sum(p.grade_probabilities) - 1) < 1e-6
    assert p.grade in (0, 1, 2, 3)


def test_metadata_and_size(model: AcneModel) -> None:
    meta = model.metadata
    assert model.path == DEFAULT_MODEL.resolve()
    assert meta["version"] == model.version == "acne-v1"
    assert meta["lesion_types"] == list(LESION_TYPES)
    assert 320 <= model.input_size <= 448
    assert model.size_bytes < 8 * 1024 * 1024
    grade = meta["grade"]
    assert isinstance(grade, dict) and len(grade["thresholds"]) == 3
    ood = meta["ood"]
    assert isinstance(ood, dict) and ood["train_pass_rate"] >= 0.99
    metrics = meta["metrics"]
    assert isinstance(metrics, dict)
    assert {"grade_accuracy", "count_mae", "qwk", "balanced_accuracy"} <= set(metrics["valid"])
    training = meta["training"]
    assert isinstance(training, dict)
    manifest = json.loads((DEFAULT_MODEL.parent / str(training["manifest"])).read_text(encoding="utf-8"))
    assert manifest_digest(manifest) == training["manifest_sha256"]
    assert all(len(entry["sha256"]) == 64 for entry in manifest)


def test_counts_follow_severity(model: AcneModel) -> None:
    """The first five grade-0 and grade-3 valid photos (by file name): every count of the latter is above
    every count of the former, and their medians are far apart."""
    samples = read_split(_valid_photos(), "valid")
    counts: dict[int, list[float]] = {}
    for grade in (0, 3):
        counts[grade] = []
        for sample in [s for s in samples if s.grade == grade][:5]:
            p = model.predict(load_rgb(sample.path))
            _consistent(p, sample.width, sample.height)
            assert p.in_distribution, sample.path.name
            assert p.model_version == model.version
            counts[grade].append(p.count)
    assert min(counts[3]) > max(counts[0]) + 10
    assert float(np.median(counts[3])) > float(np.median(counts[0])) + 30


def test_any_size_and_threads(model: AcneModel) -> None:
    samples = read_split(_valid_photos(), "valid")
    rgb = load_rgb(samples[len(samples) // 2].path)
    small = np.asarray(rgb[::2, ::3])  # a 320×214 photo, not square
    p = model.predict(np.ascontiguousarray(small))
    _consistent(p, small.shape[1], small.shape[0])
    photos = [load_rgb(s.path) for s in samples[:4]]
    expected = [model.predict(x).count for x in photos]
    got: dict[int, float] = {}

    def work(i: int) -> None:
        got[i] = model.predict(photos[i % 4]).count

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(abs(got[i] - expected[i % 4]) < 1e-4 for i in range(8))


def test_non_faces_are_refused(model: AcneModel) -> None:
    for name, rgb in synthetic_non_faces().items():
        p = model.predict(rgb)
        assert not p.in_distribution, f"{name}: OOD distance {p.ood_distance:.1f} passed"


def test_bad_input(model: AcneModel) -> None:
    with pytest.raises(ValueError):
        model.predict(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        model.predict(np.zeros((10, 10, 3), dtype=np.float32))
