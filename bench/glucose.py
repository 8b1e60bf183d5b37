"""Benchmark of glucose care (issue 5):

- metrics: the time to compute every metric for one patient's 14 and 90 days of 5-minute CGM
  readings (iglu's "Subject 1" from ../shared/data/cgm; 90 days = that trace seven times);
- report: building the AGP report and drawing it as HTML (fragment and page) and PDF, 14 days;
- ingest: readings per second uploaded in bulk (JSON arrays of 5,000) through the HTTP API of
  a server this script starts (`ehospital demo` + `ehospital serve`) on SQLite and on
  PostgreSQL, several uploads in flight;
- alerts: the latency from a reading received to its alert's notification queued, i.e. the
  request that carries an urgent low (the notification is written in the same transaction),
  measured on the server's own clock by the response time of single-reading uploads to a
  running server on SQLite.

    python bench/glucose.py [--only metrics,report,ingest,alerts] [--db sqlite,postgresql]

Prints tables, then one JSON line of name: value last.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from consultations import cpu_seconds, database_cpu_seconds, own_server

from ehospital.glucose import Series, all_metrics, mage
from ehospital.glucose.render import render_fragment, render_page, render_pdf
from ehospital.glucose.report import build_report, targets_for
from ehospital.kit import resident_id

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cgm" / "iglu_example_data_5_subject.csv"


def subject_one() -> Series:
    times, values = [], []
    with DATA.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["id"] == "Subject 1" and row["gl"] not in ("", "NA"):
                times.append(datetime.fromisoformat(row["time"]))
                values.append(float(row["gl"]))
    return Series.of(times, values)


def repeated(s: Series, times: int, days_apart: float) -> Series:
    shift = days_apart * 86400.0
    return Series(np.concatenate([s.times + k * shift for k in range(times)]), np.tile(s.glucose, times))


def timed(fn: object, series: Series, runs: int) -> tuple[float, float]:
    """Median and worst milliseconds over `runs` calls (after one warm-up call)."""
    assert callable(fn)
    fn(series)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(series)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def report_all(series: Series) -> None:
    end = float(series.times[-1])
    report = build_report(
        series, start=end - 14 * 86400.0, end=end, targets=targets_for("standard"), locale="zh"
    )
    render_fragment(report)
    render_page(report)
    render_pdf(report)


def bench_report(fortnight: Series, runs: int, result: dict[str, float]) -> None:
    end = float(fortnight.times[-1])
    parts: list[tuple[str, Any]] = [
        (
            "build",
            lambda s: build_report(s, start=end - 14 * 86400.0, end=end, targets=targets_for("standard")),
        ),
        ("all_formats", report_all),
    ]
    for name, fn in parts:
        median, worst = timed(fn, fortnight, max(5, runs // 5))
        print(f"{'report ' + name + ' 14_days':<28}{fortnight.glucose.size:>10}{median:>12.2f}{worst:>10.2f}")
        result[f"report_{name}_14_days_ms"] = round(median, 1)


# --- over HTTP ---------------------------------------------------------------------------------


async def _login(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with session.post(
        f"{base}/api/v1/auth/token", data={"username": "patient", "password": "patient-demo-1"}
    ) as r:
        token = (await r.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def _devices(session: aiohttp.ClientSession, base: str, count: int) -> list[tuple[int, dict[str, Any]]]:
    headers = await _login(session, base)
    async with session.get(f"{base}/api/v1/patients", headers=headers) as r:
        family = [p["id"] for p in await r.json()]
    devices = []
    for i in range(count):
        pid = family[i % len(family)]
        async with session.post(
            f"{base}/api/v1/patients/{pid}/glucose/devices",
            headers=headers,
            json={"kind": "cgm", "label": f"bench {i}", "unit": "mg/dL"},
        ) as r:
            assert r.status == 201, await r.text()
            devices.append((pid, await r.json()))
    return devices


def _batch(first: datetime, n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    values = np.clip(140 + 50 * np.sin(np.arange(n) / 180.0) + rng.normal(0, 8, n), 45, 390).round(1)
    return json.dumps(
        [
            {"time": (first + timedelta(minutes=k)).isoformat(), "value": float(v)}
            for k, v in enumerate(values)
        ]
    ).encode()


async def bench_ingest(
    base: str, total: int, batch: int, concurrency: int, server: argparse.Namespace
) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        per_device = batch * 5  # 1-minute readings: 5 batches = 17 days per device
        devices = await _devices(session, base, max(1, total // per_device))
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        jobs = []
        for d, (_, device) in enumerate(devices):
            for b in range(per_device // batch):
                first = now - timedelta(minutes=per_device - b * batch + 1)
                jobs.append((device, _batch(first, batch, d * 100 + b)))
        stored = 0
        pending = list(jobs)

        async def worker() -> None:
            nonlocal stored
            while pending:
                device, body = pending.pop()
                async with session.post(
                    f"{base}/api/v1/glucose/devices/{device['uid']}/readings",
                    data=body,
                    headers={"api-secret": device["api_secret"], "content-type": "application/json"},
                ) as r:
                    answer = await r.json()
                    assert r.status == 200, answer
                    stored += answer["stored"]

        cpu_before = cpu_seconds(server.server_pid)
        db_before = database_cpu_seconds(server.db_name) if server.db_name else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server.server_pid) - cpu_before
        db_cpu = (database_cpu_seconds(server.db_name) - db_before) if server.db_name else 0.0
    return {
        "readings": stored,
        "seconds": round(elapsed, 2),
        "readings_per_s": round(stored / elapsed),
        "server_cpu_us_per_reading": round(server_cpu / max(stored, 1) * 1e6, 1),
        "database_cpu_us_per_reading": round(db_cpu / max(stored, 1) * 1e6, 1),
    }


async def _patients_with_devices(
    session: aiohttp.ClientSession, base: str, count: int
) -> list[dict[str, Any]]:
    """`count` new patient accounts, each with herself as the family member and one CGM."""
    tag = uuid.uuid4().hex[:6]
    devices = []
    for i in range(count):
        username = f"ga{tag}{i}"
        async with session.post(
            f"{base}/api/v1/auth/register",
            json={"username": username, "password": "bench-password-1", "display_name": username},
        ) as r:
            assert r.status == 201, await r.text()
        async with session.post(
            f"{base}/api/v1/auth/token", data={"username": username, "password": "bench-password-1"}
        ) as r:
            headers = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
        born = date(1950 + i % 50, 1 + i % 12, 1 + i % 28)
        body = {
            "name": f"A{i}",
            "id_number": resident_id.make("110105", born, i % 100, "female"),
            "sex": "female",
            "birth_date": born.isoformat(),
            "relationship": "self",
        }
        async with session.post(f"{base}/api/v1/patients", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            pid = (await r.json())["id"]
        async with session.post(
            f"{base}/api/v1/patients/{pid}/glucose/devices",
            headers=headers,
            json={"kind": "cgm", "label": "bench", "unit": "mg/dL"},
        ) as r:
            devices.append(await r.json())
    return devices


async def bench_alerts(base: str, patients: int) -> dict[str, float]:
    """Per patient, one reading per request, a minute apart: an urgent low (raises an alert and
    queues its notifications), 16 readings in range (the episode ends), an urgent low again,
    then two in range; all within the last 30 minutes, so they are live."""
    async with aiohttp.ClientSession() as session:
        devices = await _patients_with_devices(session, base, patients)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        plan = [45.0] + [120.0] * 16 + [45.0, 120.0, 120.0]
        raising: list[float] = []
        other: list[float] = []
        for k, value in enumerate(plan):
            when = now - timedelta(minutes=29 - k)
            for device in devices:
                started = time.perf_counter()
                async with session.post(
                    f"{base}/api/v1/glucose/devices/{device['uid']}/readings",
                    json=[{"time": when.isoformat(), "value": value}],
                    headers={"api-secret": device["api_secret"]},
                ) as r:
                    answer = await r.json()
                elapsed = (time.perf_counter() - started) * 1000
                assert r.status == 200, answer
                (raising if "urgent_low" in answer["alerts_raised"] else other).append(elapsed)

    def pct(xs: list[float], p: float) -> float:
        return round(float(np.percentile(xs, p)), 1) if xs else float("nan")

    return {
        "alerts": len(raising),
        "alert_latency_p50_ms": pct(raising, 50),
        "alert_latency_p99_ms": pct(raising, 99),
        "reading_latency_p50_ms": pct(other, 50),
        "reading_latency_p99_ms": pct(other, 99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--only", default="metrics,report,ingest,alerts", help="comma-separated parts")
    parser.add_argument("--db", default="sqlite,postgresql", help="databases for the ingestion part")
    parser.add_argument("--readings", type=int, default=200_000, help="readings to upload per database")
    parser.add_argument("--batch", type=int, default=5000, help="readings per upload")
    parser.add_argument("--concurrency", type=int, default=4, help="uploads in flight")
    parser.add_argument("--alert-patients", type=int, default=100, help="patients in the alert part")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if not DATA.is_file():
        print(f"bench/glucose.py: {DATA} is missing (../shared/data beside the checkout)", file=sys.stderr)
        return 1
    fortnight = subject_one()
    quarter = repeated(fortnight, 7, 14.0)
    result: dict[str, Any] = {}
    print(f"{'what':<28}{'readings':>10}{'median ms':>12}{'max ms':>10}")
    if "metrics" in parts:
        for label, series in (("14_days", fortnight), ("90_days", quarter)):
            for name, fn in (("all_metrics", all_metrics), ("mage", mage)):
                median, worst = timed(fn, series, args.runs)
                print(f"{name + ' ' + label:<28}{series.glucose.size:>10}{median:>12.2f}{worst:>10.2f}")
                result[f"{name}_{label}_ms"] = round(median, 3)
    if "report" in parts:
        bench_report(fortnight, args.runs, result)
    if "ingest" in parts:
        for db in args.db.split(","):
            server_args = argparse.Namespace(db=db, workers=2 if db == "postgresql" else 1, pool=10)
            with own_server(server_args) as url:
                found = asyncio.run(
                    bench_ingest(url, args.readings, args.batch, args.concurrency, server_args)
                )
            print(
                f"ingest {db}: {found['readings']} readings in {found['seconds']} s"
                f" = {found['readings_per_s']}/s; CPU per reading:"
                f" server {found['server_cpu_us_per_reading']} µs,"
                f" PostgreSQL {found['database_cpu_us_per_reading']} µs"
            )
            result[f"ingest_{db}_readings_per_s"] = found["readings_per_s"]
            result[f"ingest_{db}_server_cpu_us_per_reading"] = found["server_cpu_us_per_reading"]
            if db == "postgresql":
                result["ingest_postgresql_database_cpu_us_per_reading"] = found["database_cpu_us_per_reading"]
    if "alerts" in parts:
        server_args = argparse.Namespace(db="sqlite", workers=1, pool=10)
        with own_server(server_args) as url:
            found = asyncio.run(bench_alerts(url, args.alert_patients))
        print(f"alerts: {found}")
        result.update({k: v for k, v in found.items()})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
