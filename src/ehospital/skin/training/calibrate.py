"""Calibration fitted on held-out training photos (numpy only): grade thresholds, count spread, OOD."""

from __future__ import annotations

import math

import numpy as np

HAYASHI_THRESHOLDS: tuple[float, float, float] = (5.5, 20.5, 50.5)  # ≤5, 6–20, 21–50, >50 lesions


def hayashi_grade(
    counts: np.ndarray, thresholds: tuple[float, float, float] = HAYASHI_THRESHOLDS
) -> np.ndarray:
    """Grades 0–3 of counts: how many thresholds each count exceeds."""
    c = np.asarray(counts, dtype=np.float64)
    return np.asarray(sum((c > t).astype(np.int64) for t in thresholds), dtype=np.int64)


def fit_thresholds(
    predicted: np.ndarray, grades: np.ndarray, window: float = 0.35
) -> tuple[tuple[float, float, float], list[str]]:
    """Grade thresholds on predicted counts, each fitted on the photos of the two grades it separates.

    Each threshold maximises the accuracy of its pair within ±`window` of the Hayashi value; ties go to
    the value nearest Hayashi's, and a pair lacking photos keeps Hayashi's value.
    """
    fitted: list[float] = []
    notes: list[str] = []
    for k, hayashi in enumerate(HAYASHI_THRESHOLDS, start=1):
        pair = (grades == k - 1) | (grades == k)
        p, upper = predicted[pair], grades[pair] == k
        if upper.all() or not upper.any():
            fitted.append(hayashi)
            notes.append(f"threshold {k}: Hayashi's (no photos of both grades {k - 1} and {k})")
            continue
        lo, hi = hayashi * (1 - window), hayashi * (1 + window)
        candidates = np.unique(np.concatenate([[hayashi, lo, hi], np.clip(p, lo, hi)]))
        mids = np.unique(np.concatenate([[hayashi], (candidates[1:] + candidates[:-1]) / 2]))
        best, best_acc = hayashi, -1.0
        for t in mids:
            acc = float(((p > t) == upper).mean())
            if acc > best_acc + 1e-12 or (
                abs(acc - best_acc) <= 1e-12 and abs(t - hayashi) < abs(best - hayashi)
            ):
                best, best_acc = float(t), acc
        fitted.append(round(best, 3))
        notes.append(f"threshold {k}: {best:.2f} (pair accuracy {best_acc:.3f} on {int(pair.sum())} photos)")
    for k in (1, 2):  # keep them ordered
        fitted[k] = max(fitted[k], fitted[k - 1] + 1.0)
    return (fitted[0], fitted[1], fitted[2]), notes


def fit_spread(predicted: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the count's standard deviation sd = a + b · predicted, from |residuals|."""
    p = np.clip(np.asarray(predicted, dtype=np.float64), 0, None)
    scale = np.abs(np.asarray(true, dtype=np.float64) - p) * math.sqrt(math.pi / 2)  # E|r| = sd·sqrt(2/π)
    design = np.stack([np.ones_like(p), p], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, scale, rcond=None)
    b = max(float(b), 0.0)
    a = max(float(np.mean(scale - b * p)), 0.5)
    return round(a, 4), round(b, 4)


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf shrunk covariance of the rows of `x` and the shrinkage used."""
    n, p = x.shape
    centred = x - x.mean(axis=0)
    s = centred.T @ centred / n
    mu = float(np.trace(s)) / p
    delta = float(((s - mu * np.eye(p)) ** 2).sum()) / p
    beta = float(sum(((np.outer(r, r) - s) ** 2).sum() for r in centred)) / (p * n * n)
    shrink = 0.0 if delta == 0 else min(beta, delta) / delta
    return shrink * mu * np.eye(p) + (1 - shrink) * s, shrink


def fit_ood(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, whitening matrix W, shrinkage): Mahalanobis distance = ||(e − mean) @ W||."""
    x = np.asarray(embeddings, dtype=np.float64)
    cov, shrink = ledoit_wolf(x)
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, values.max() * 1e-9, None)
    whiten = vectors / np.sqrt(values)
    return x.mean(axis=0), whiten, shrink


def mahalanobis(embeddings: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    z = (np.asarray(embeddings, dtype=np.float64) - mean) @ whiten
    return np.asarray(np.sqrt((z**2).sum(axis=1)))
