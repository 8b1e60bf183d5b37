"""Evaluation of an exported acne model through AcneModel (onnxruntime and numpy; no torch).

Grade accuracy, balanced accuracy, quadratic weighted kappa, count MAE overall and by type, each
with a 95 % percentile bootstrap interval over photos, and the grade confusion matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ehospital.skin.model import LESION_TYPES, AcneModel, resize_for_model
from ehospital.skin.training.dataset import Sample, load_rgb, read_split

N_GRADES = 4


def confusion(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    m = np.zeros((N_GRADES, N_GRADES), dtype=np.int64)
    np.add.at(m, (true, pred), 1)
    return m


def accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float((true == pred).mean())


def balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the grades present in `true`."""
    recalls = [float((pred[true == g] == g).mean()) for g in range(N_GRADES) if (true == g).any()]
    return float(np.mean(recalls))


def quadratic_kappa(true: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights over grades 0–3."""
    observed = confusion(true, pred).astype(np.float64)
    n = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    g = np.arange(N_GRADES)
    weights = (g[:, None] - g[None, :]) ** 2 / (N_GRADES - 1) ** 2
    denominator = float((weights * expected).sum())
    return 1.0 if denominator == 0 else 1.0 - float((weights * observed).sum()) / denominator


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of statistic(indices) over `rounds` resamples of n photos."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, size=n)) for _ in range(rounds)]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)


def _type_mae(pred: np.ndarray, true: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda i: float(np.abs(pred[i] - true[i]).mean())


def metrics(
    true_grade: np.ndarray,
    pred_grade: np.ndarray,
    true_types: np.ndarray,
    pred_types: np.ndarray,
    in_distribution: np.ndarray,
    rounds: int = 2000,
) -> dict[str, object]:
    """Every metric of the model card, with 95 % bootstrap intervals."""
    true_total, pred_total = true_types.sum(axis=1), pred_types.sum(axis=1)
    n = len(true_grade)

    def with_ci(fn: Callable[[np.ndarray], float]) -> dict[str, object]:
        return {"value": round(fn(np.arange(n)), 4), "ci95": list(bootstrap_ci(fn, n, rounds))}

    out: dict[str, object] = {
        "photos": n,
        "grade_accuracy": with_ci(lambda i: accuracy(true_grade[i], pred_grade[i])),
        "balanced_accuracy": with_ci(lambda i: balanced_accuracy(true_grade[i], pred_grade[i])),
        "qwk": with_ci(lambda i: quadratic_kappa(true_grade[i], pred_grade[i])),
        "count_mae": with_ci(lambda i: float(np.abs(pred_total[i] - true_total[i]).mean())),
        "count_bias": round(float((pred_total - true_total).mean()), 4),
        "count_mae_by_type": {
            kind: with_ci(_type_mae(pred_types[:, t], true_types[:, t]))
            for t, kind in enumerate(LESION_TYPES)
        },
        "count_mae_by_grade": {
            str(g): round(float(np.abs(pred_total - true_total)[true_grade == g].mean()), 4)
            for g in range(N_GRADES)
            if (true_grade == g).any()
        },
        "confusion_matrix": {
            "rows": "true grade 0-3",
            "columns": "predicted grade 0-3",
            "counts": confusion(true_grade, pred_grade).tolist(),
        },
        "in_distribution_rate": round(float(np.mean(in_distribution)), 4),
    }
    return out


def synthetic_non_faces(size: int = 640, seed: int = 0) -> dict[str, np.ndarray]:
    """Pictures the model must refuse: a plain wall, bricks, a typed page, a landscape, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    # a painted wall: off-white with soft blotches and fine grain
    blotches = np.asarray(
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    wall = (
        np.array([222.0, 214.0, 196.0])
        + (blotches[..., None] - 128) * 0.08
        + rng.normal(0, 3, (size, size, 1))
    )
    # bricks: 40×80 px red-brown bricks in running bond with grey mortar
    bricks = np.empty((size, size, 3))
    row = (yy * size // 40).astype(int)
    shifted = (xx * size + (row % 2) * 40) % 80
    mortar = ((yy * size) % 40 < 5) | (shifted < 5)
    tint = rng.uniform(0.85, 1.15, (size // 40 + 1, size // 80 + 2))[
        row, ((xx * size + (row % 2) * 40) // 80).astype(int)
    ]
    bricks[:] = np.array([150.0, 70.0, 50.0]) * tint[..., None]
    bricks[mortar] = (185.0, 180.0, 170.0)
    bricks += rng.normal(0, 6, (size, size, 3))
    # a typed page
    page = Image.new("RGB", (size, size), (248, 248, 244))
    draw = ImageDraw.Draw(page)
    words = [
        "patient",
        "report",
        "dose",
        "daily",
        "tablet",
        "clinic",
        "2024",
        "the",
        "and",
        "of",
        "mg",
        "review",
    ]
    for line in range(size // 22 - 2):
        text = " ".join(rng.choice(words, size=12))
        draw.text((24, 20 + 22 * line), text, fill=(20, 20, 20))
    document = np.asarray(page, dtype=np.float64)
    # a landscape: sky gradient over a green-brown ground
    sky = (
        np.array([90.0, 150.0, 230.0]) * (1 - yy[..., None]) + np.array([200.0, 225.0, 250.0]) * yy[..., None]
    )
    ground = (
        np.array([60.0, 120.0, 50.0]) * (1 - yy[..., None]) + np.array([120.0, 100.0, 60.0]) * yy[..., None]
    )
    horizon = 0.55 + 0.05 * np.sin(xx * 6.0)
    landscape = np.where((yy > horizon)[..., None], ground, sky)
    noise = rng.integers(0, 256, (size, size, 3)).astype(np.float64)
    pictures = {"wall": wall, "bricks": bricks, "document": document, "landscape": landscape, "noise": noise}
    return {name: np.clip(p, 0, 255).astype(np.uint8) for name, p in pictures.items()}


def ood_check(model: AcneModel) -> dict[str, object]:
    """OOD distance of each synthetic non-face, and whether the model refuses it."""
    result: dict[str, object] = {}
    for name, rgb in synthetic_non_faces().items():
        p = model.predict(rgb)
        result[name] = {"ood_distance": round(p.ood_distance, 2), "refused": not p.in_distribution}
    return result


def evaluate_samples(model: AcneModel, samples: list[Sample], batch: int = 8) -> dict[str, object]:
    """Run the model on every photo and compute `metrics`; also the mean latency of predict()."""
    pred_types = np.zeros((len(samples), len(LESION_TYPES)))
    pred_grade = np.zeros(len(samples), dtype=np.int64)
    inside = np.zeros(len(samples), dtype=bool)
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        rgbs = [load_rgb(s.path) for s in chunk]
        density, counts, ood = model.run(np.stack([resize_for_model(rgb, model.input_size) for rgb in rgbs]))
        for k, rgb in enumerate(rgbs):
            p = model.interpret(density[k], counts[k], float(ood[k]), rgb.shape[1], rgb.shape[0])
            pred_types[start + k] = counts[k]
            pred_grade[start + k] = p.grade
            inside[start + k] = p.in_distribution
    true_types = np.array([s.counts_by_type() for s in samples], dtype=np.float64)
    true_grade = np.array([s.grade for s in samples], dtype=np.int64)
    result = metrics(true_grade, pred_grade, true_types, pred_types, inside)
    rgb = load_rgb(samples[0].path)
    model.predict(rgb)
    timings = []
    for _ in range(min(10, max(3, len(samples)))):
        t0 = time.perf_counter()
        model.predict(rgb)
        timings.append(time.perf_counter() - t0)
    result["latency_ms_median"] = round(1000 * float(np.median(timings)), 1)
    result["ood_threshold"] = model.metadata["ood"]["threshold"]  # type: ignore[index]
    result["synthetic_non_faces"] = ood_check(model)
    return result


def evaluate(model_path: Path | None, data: Path, split: str, limit: int | None = None) -> dict[str, object]:
    """Metrics of the model at `model_path` (default: the packaged one) on `data/split`."""
    samples = read_split(data, split)
    if limit is not None:
        samples = samples[:limit]
    model = AcneModel.load(model_path)
    result: dict[str, object] = {
        "model": str(model.path),
        "version": model.version,
        "split": split,
        "data": str(data),
    }
    result.update(evaluate_samples(model, samples))
    return result
