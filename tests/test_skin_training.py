"""The acne training pipeline end to end on 8 photos: manifest, determinism, ONNX export, evaluation."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ehospital.skin.model import AcneModel
from ehospital.skin.training import cli
from ehospital.skin.training.dataset import manifest_digest, sha256_file

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "skin" / "acne04"


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ehospital skin")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _train(out: Path, *extra: str) -> list[dict[str, object]]:
    args = _parser().parse_args(
        ["train", "--data", str(DATA), "--out", str(out), "--work", str(out.parent / "work"), "--epochs", "1", "--size", "128",
         "--limit", "8", "--views", "2", "--batch", "4", "--seed", "7", *extra]
    )  # fmt: skip
    assert args.func(args) == 0
    log = (out.parent / "work" / "train-log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in log]


def test_pipeline_on_eight_photos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        _require(False, "torch is not installed (pip install -e '.[train]')")
    _require((DATA / "train").is_dir(), f"ACNE04 photos not found at {DATA}")

    first = _train(tmp_path / "a" / "model")
    second = _train(tmp_path / "b" / "model")
    epochs = [[e for e in log if e["event"] == "epoch"] for log in (first, second)]
    assert epochs[0] and [{k: v for k, v in e.items() if k != "seconds"} for e in epochs[0]] == [
        {k: v for k, v in e.items() if k != "seconds"} for e in epochs[1]
    ]

    out = tmp_path / "a" / "model"
    manifest = json.loads((out / "acne-v1.manifest.json").read_text(encoding="utf-8"))
    meta = json.loads((out / "acne-v1.json").read_text(encoding="utf-8"))
    assert meta["training"]["manifest_sha256"] == manifest_digest(manifest)
    roles = {entry["role"] for entry in manifest}
    assert roles == {"train", "train-holdout", "valid"}
    entry = manifest[0]
    assert entry["sha256"] == sha256_file(DATA / entry["path"])
    assert sum(entry["by_type"].values()) == entry["lesions"]

    model = AcneModel(out / "acne-v1.onnx")
    assert model.input_size == 128
    capsys.readouterr()
    args = _parser().parse_args(
        ["evaluate", "--model", str(out / "acne-v1.onnx"), "--data", str(DATA), "--limit", "6", "--json"]
    )
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["photos"] == 6
    for key in ("grade_accuracy", "balanced_accuracy", "qwk", "count_mae"):
        assert set(result[key]) == {"value", "ci95"}
    assert set(result["count_mae_by_type"]) == {"comedone", "papule", "pustule", "nodule_cyst"}
    assert len(result["confusion_matrix"]["counts"]) == 4


def test_ensemble_with_views_rendered_in_worker_processes(tmp_path: Path) -> None:
    """Two members share the frozen layers; views rendered by two processes train exactly like in-process ones."""
    try:
        import torch  # noqa: F401
    except ImportError:
        _require(False, "torch is not installed (pip install -e '.[train]')")
    _require((DATA / "train").is_dir(), f"ACNE04 photos not found at {DATA}")

    extra = ("--members", "2", "--first-trained", "5", "--views", "3")
    pooled = _train(tmp_path / "a" / "model", *extra, "--workers", "2")
    inline = _train(tmp_path / "b" / "model", *extra)
    epochs = [[{k: v for k, v in e.items() if k != "seconds"} for e in log if e["event"] == "epoch"]
              for log in (pooled, inline)]  # fmt: skip
    assert [e["member"] for e in epochs[0]] == [0, 1]
    assert epochs[0] == epochs[1]
    assert epochs[0][0]["heldout_mae"] != epochs[0][1]["heldout_mae"]  # different seeds, different members

    out = tmp_path / "a" / "model"
    meta = json.loads((out / "acne-v1.json").read_text(encoding="utf-8"))
    assert meta["training"]["best_epoch"] == [1, 1]
    assert "ensemble of 2" in meta["training"]["recipe"]
    model = AcneModel(out / "acne-v1.onnx")
    prediction = model.predict(np.full((200, 160, 3), 128, dtype=np.uint8))
    assert prediction.count >= 0 and prediction.grade in range(4)
