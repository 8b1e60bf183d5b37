"""`ehospital skin …`: analyse photos, export consented labelled photos, train and evaluate."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ehospital.config import Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".gif", ".bmp", ".tif", ".tiff", ".pdf"}


def add_parser(sub: Any) -> None:
    skin = sub.add_parser("skin", help="the skin hospital: acne photo analysis and the acne model")
    skin_sub = skin.add_subparsers(dest="skin_command", required=True)

    analyze = skin_sub.add_parser(
        "analyze",
        help="check and analyse facial photos; one JSON object per image on standard output",
        description="Prints one JSON object per image: file, ok, acne {grade 0-3, lesions, by_type}, "
        "referral, quality, elapsed_ms; ok is false with a reason when a photo check fails. "
        "Exit status 0 when every image was analysed, 1 when any was refused or unreadable.",
    )
    analyze.add_argument("images", nargs="*", help="image files")
    analyze.add_argument("--batch", metavar="DIR", help="analyse every image in DIR (not recursive)")
    analyze.add_argument("--model", metavar="PATH", help="an ONNX acne model (default: the packaged one)")
    analyze.add_argument("--overlay-dir", metavar="DIR", help="also write each photo's lesion overlay here")
    analyze.set_defaults(func=run_analyze, needs_settings=False)

    export = skin_sub.add_parser(
        "export-dataset",
        help="write consented, dermatologist-confirmed photos and labels in the training data's layout",
    )
    export.add_argument("out", help="an empty or new directory")
    export.add_argument("--valid-share", type=float, default=0.2, help="share of patients in valid/")
    export.set_defaults(func=run_export)

    from ehospital.skin.training.cli import register

    register(skin_sub)


def _images(args: argparse.Namespace) -> Iterator[Path]:
    for name in args.images:
        yield Path(name)
    if args.batch:
        folder = Path(args.batch)
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                yield path


def run_analyze(args: argparse.Namespace) -> int:
    from ehospital.skin.analysis import analyze
    from ehospital.skin.model import AcneModel

    if not args.images and not args.batch:
        print("ehospital skin analyze: give image files or --batch DIR", file=sys.stderr)
        return 2
    if args.batch and not Path(args.batch).is_dir():
        print(f"ehospital skin analyze: {args.batch} is not a directory", file=sys.stderr)
        return 2
    try:
        model = AcneModel.load(Path(args.model) if args.model else None)
    except (OSError, ValueError) as exc:
        print(f"ehospital skin analyze: cannot load the model: {exc}", file=sys.stderr)
        return 2
    overlay_dir = Path(args.overlay_dir) if args.overlay_dir else None
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    seen = 0
    for path in _images(args):
        seen += 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(json.dumps({"file": str(path), "ok": False, "reason": "unreadable", "error": exc.strerror}))
            failures += 1
            continue
        result = analyze(data, model, overlay=overlay_dir is not None)
        if overlay_dir is not None and result.overlay is not None:
            (overlay_dir / f"{path.stem}.overlay.jpg").write_bytes(result.overlay)
        print(json.dumps({"file": str(path), **result.summary()}, ensure_ascii=False), flush=True)
        failures += not result.ok
    if seen == 0:
        print(f"ehospital skin analyze: no images in {args.batch}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from ehospital.db import create_engine, create_sessionmaker, migrate, session_scope
    from ehospital.skin.export import export_dataset
    from ehospital.skin.service import photo_store

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"ehospital skin export-dataset: {out} is not empty", file=sys.stderr)
        return 2
    if not 0 <= args.valid_share < 1:
        print("ehospital skin export-dataset: --valid-share must be in [0, 1)", file=sys.stderr)
        return 2
    migrate(settings.resolved_database_url())

    async def run() -> dict[str, object]:
        engine = create_engine(settings)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                result = await export_dataset(
                    session, photo_store(settings), out, valid_share=args.valid_share
                )
            return {
                "out": str(result.out),
                "photos": result.photos,
                **result.by_split,
                "skipped_unconfirmed": result.skipped_unconfirmed,
            }
        finally:
            await engine.dispose()

    print(json.dumps(asyncio.run(run())))
    return 0
