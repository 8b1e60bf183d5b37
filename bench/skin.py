"""Benchmark of the AI skin report (issue 6):

- pipeline: one photo's bytes to its report, as the API runs it: decode, the photo checks,
  the acne model (onnxruntime), the report and the lesion overlay (`ehospital.skin.analysis`),
  on ACNE04 valid photos (640×640 JPEG) and on the same photos enlarged to a 4000×3000 phone
  photo; p50/p95 latency one at a time, and photos/s with two at once;
- http: end to end through `POST /api/v1/skin/patients/{id}/photos` of a server this script
  starts (`ehospital demo` + `ehospital serve`, SQLite): upload, analysis, encrypted storage,
  the database rows and the JSON report;
- the model's file size and the process's memory (RSS) after loading it and at its peak.

    python bench/skin.py [--photos 60] [--only pipeline,http]

Prints tables, then one JSON line of name: value last.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from consultations import own_server
from PIL import Image

from ehospital.skin.analysis import analyze
from ehospital.skin.model import AcneModel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "skin" / "acne04" / "valid"


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def photos(count: int) -> list[bytes]:
    paths = sorted(DATA.glob("*.jpg"))
    if not paths:
        sys.exit(f"no photos in {DATA}: the ACNE04 data (../shared/data/skin/acne04) is needed")
    step = max(1, len(paths) // count)
    return [p.read_bytes() for p in paths[::step][:count]]


def phone_sized(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        big = img.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, "JPEG", quality=92)
    return out.getvalue()


def run_pipeline(model: AcneModel, inputs: list[bytes], label: str, out: dict[str, Any]) -> None:
    analyze(inputs[0], model)  # warm-up
    times: list[float] = []
    steps: dict[str, list[float]] = {}
    refused = 0
    for data in inputs:
        started = time.perf_counter()
        result = analyze(data, model)
        times.append((time.perf_counter() - started) * 1000)
        refused += not result.ok
        for name, ms in result.timings_ms.items():
            steps.setdefault(name, []).append(ms)
    p50, p95 = percentile(times, 50), percentile(times, 95)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda d: analyze(d, model), inputs))
    per_second = len(inputs) / (time.perf_counter() - started)
    print(f"{label}: {len(inputs)} photos, {refused} refused by the checks")
    print(f"  one at a time: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(times):.0f} ms")
    print("  steps (median ms): " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in steps.items()))
    print(f"  two at a time: {per_second:.1f} photos/s")
    out[f"{label}_p50_ms"] = round(p50, 1)
    out[f"{label}_p95_ms"] = round(p95, 1)
    out[f"{label}_photos_per_s"] = round(per_second, 2)
    for name, values in steps.items():
        out[f"{label}_{name}_median_ms"] = round(statistics.median(values), 1)


async def run_http(inputs: list[bytes], out: dict[str, Any]) -> None:
    args = argparse.Namespace(db="sqlite", workers=1, pool=10)
    with own_server(args) as base:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/v1/auth/token", data={"username": "patient", "password": "patient-demo-1"}
            ) as r:
                headers = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
            async with http.get(f"{base}/api/v1/patients", headers=headers) as r:
                patient_id = (await r.json())[0]["id"]
            times: list[float] = []
            for i, data in enumerate([inputs[0], *inputs]):
                form = aiohttp.FormData()
                form.add_field("file", data, filename="face.jpg", content_type="image/jpeg")
                started = time.perf_counter()
                async with http.post(
                    f"{base}/api/v1/skin/patients/{patient_id}/photos", data=form, headers=headers
                ) as r:
                    await r.read()
                    if r.status not in (201, 422):
                        raise SystemExit(f"upload answered {r.status}: {await r.text()}")
                if i:  # the first loads the model
                    times.append((time.perf_counter() - started) * 1000)
    p50, p95 = percentile(times, 50), percentile(times, 95)
    print(f"http (SQLite, 1 process): {len(times)} uploads: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    out["http_p50_ms"] = round(p50, 1)
    out["http_p95_ms"] = round(p95, 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=60, help="how many ACNE04 valid photos")
    parser.add_argument("--only", default="pipeline,http")
    args = parser.parse_args()
    only = set(args.only.split(","))
    out: dict[str, Any] = {}
    before = rss_mib()
    model = AcneModel.load()
    loaded = rss_mib()
    out["model_bytes"] = model.size_bytes
    out["model_version"] = model.version
    out["input_size"] = model.input_size
    inputs = photos(args.photos)
    if "pipeline" in only:
        run_pipeline(model, inputs, "photo640", out)
        run_pipeline(model, [phone_sized(d) for d in inputs[:20]], "phone4000x3000", out)
    out["rss_model_loaded_mib"] = round(loaded - before, 1)
    out["rss_peak_mib"] = round(rss_mib("VmHWM"), 1)
    print(
        f"model {model.version}: {model.size_bytes / 1e6:.2f} MB on disk, input {model.input_size} px; "
        f"RSS +{loaded - before:.0f} MiB when loaded, peak {out['rss_peak_mib']:.0f} MiB"
    )
    if "http" in only:
        asyncio.run(run_http(inputs[:30], out))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
