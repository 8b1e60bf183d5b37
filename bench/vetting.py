"""Benchmark of the vetting engine: the knowledge build, prescriptions vetted per second
in-process on one core (p50/p99 per prescription), and over HTTP at a fixed request rate.

    python bench/vetting.py                       # 100,000 in-process, then HTTP at 500/s for 20 s
    python bench/vetting.py --http-rate 0         # in-process only

Prescriptions of 1–5 drugs drawn from the formulary and the ONC lists, with patient context
(age, sex, eGFR, conditions, 0–3 current medications). Prints a table, then one JSON line of
name: value as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import random
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

import aiohttp
from consultations import Api, own_server  # bench/ is this script's folder

from ehospital.vetting import Item, Patient, build, vet
from ehospital.vetting.knowledge import FORMULARY, Knowledge

FREQUENCIES = ["qd", "bid", "tid", "qid", "qn", None]
CONDITIONS = ["I10", "E11.9", "K92.2", "N18.3", "J45.9"]


def drug_names(kb: Knowledge) -> list[str]:
    with FORMULARY.open(encoding="utf-8") as f:
        names = [row["generic_en"] for row in csv.DictReader(f)]
    names += [kb.ingredients[a].name_en for pair in list(kb.onc)[:300] for a in pair]
    names += ["辛伐他汀", "C10AA01", "atorvastatin calcium", "rifampin", "unknownium"]
    return names


def prescriptions(kb: Knowledge, n: int, seed: int) -> list[tuple[list[Item], Patient]]:
    rng = random.Random(seed)
    names = drug_names(kb)
    out: list[tuple[list[Item], Patient]] = []
    for _ in range(n):
        items = [
            Item(
                rng.choice(names),
                Decimal(rng.choice([5, 10, 20, 40, 80, 500])),
                "mg",
                rng.choice(["oral", "oral", "oral", "topical"]),
                rng.choice(FREQUENCIES),
                rng.randint(1, 28),
            )
            for _ in range(rng.randint(1, 5))
        ]
        patient = Patient(
            age=rng.randint(1, 95),
            sex=rng.choice(["F", "M"]),
            egfr=Decimal(rng.randint(10, 120)),
            conditions=tuple(rng.sample(CONDITIONS, rng.randint(0, 2))),
            current_medications=tuple(rng.sample(names, rng.randint(0, 3))),
        )
        out.append((items, patient))
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def in_process(kb: Knowledge, n: int, seed: int) -> dict[str, Any]:
    cases = prescriptions(kb, n, seed)
    for items, patient in cases[:1000]:  # warm the caches a real server would have warm
        vet(items, patient, kb)
    latencies: list[float] = []
    decisions = {"block": 0, "review": 0, "pass": 0}
    clock = time.perf_counter
    started = clock()
    for items, patient in cases:
        t = clock()
        verdict = vet(items, patient, kb)
        latencies.append(clock() - t)
        decisions[verdict.decision] += 1
    seconds = clock() - started
    return {
        "prescriptions": n,
        "per_s": n / seconds,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "mean_drugs": statistics.mean(len(items) for items, _ in cases),
        **{f"decision_{k}": v for k, v in decisions.items()},
    }


async def over_http(base: str, kb: Knowledge, rate: int, seconds: int, seed: int) -> dict[str, Any]:
    """An open-loop load: requests start on a fixed schedule whatever the answers' speed."""
    cases = prescriptions(kb, rate * seconds, seed + 1)
    bodies = [
        {
            "patient": {
                "age": p.age,
                "sex": p.sex,
                "egfr": float(p.egfr or 0),
                "conditions": list(p.conditions),
                "current_medications": list(p.current_medications),
            },
            "items": [
                {
                    k: v
                    for k, v in {
                        "drug": i.drug,
                        "dose": float(i.dose or 1),
                        "unit": i.unit,
                        "route": i.route,
                        "frequency": i.frequency,
                        "days": i.days,
                    }.items()
                    if v is not None
                }
                for i in items
            ],
        }
        for items, p in cases
    ]
    latencies: list[float] = []
    errors = 0
    gc.freeze()  # the load generator's own pauses are not the server's latency
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:
        api = Api(http, base)
        token = await api.login("dr.zhang", "doctor-demo-1")
        headers = {"Authorization": f"Bearer {token}"}

        async def one(body: dict[str, Any], measured: bool = True) -> None:
            nonlocal errors
            t = time.perf_counter()
            async with http.post(base + "/api/v1/vet", json=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
                    return
            if measured:
                latencies.append(time.perf_counter() - t)

        # Warm-up, not measured: a fresh server process builds its caches on the first requests.
        warm = time.perf_counter()
        warming = []
        for n, body in enumerate(bodies[: rate * 2]):
            delay = warm + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            warming.append(asyncio.create_task(one(body, measured=False)))
        await asyncio.gather(*warming)
        tasks = []
        start = time.perf_counter()
        for n, body in enumerate(bodies):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "requests": len(bodies),
        "errors": errors,
        "offered_per_s": rate,
        "achieved_per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "p999_ms": pct(latencies, 99.9) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prescriptions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--http-rate", type=int, default=500, help="requests/s offered; 0 skips HTTP")
    parser.add_argument("--http-seconds", type=int, default=20)
    parser.add_argument("--url", help="a running server with the demo; default: start one")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args()

    started = time.perf_counter()
    kb = build()
    build_s = time.perf_counter() - started
    print(
        f"knowledge build: {build_s:.3f} s ({len(kb.ingredients)} ingredients, "
        f"{sum(len(r) for r in kb.term_rules.values())} ANSM rules, {len(kb.onc)} ONC pairs)"
    )
    local = in_process(kb, args.prescriptions, args.seed)
    print(
        f"in-process: {local['prescriptions']} prescriptions (mean {local['mean_drugs']:.1f} drugs), "
        f"{local['per_s']:.0f}/s, p50 {local['p50_ms']:.3f} ms, p99 {local['p99_ms']:.3f} ms "
        f"(block {local['decision_block']}, review {local['decision_review']}, pass {local['decision_pass']})"
    )
    result: dict[str, Any] = {
        "knowledge_build_s": round(build_s, 3),
        "in_process_per_s": round(local["per_s"]),
        "in_process_p50_ms": round(local["p50_ms"], 4),
        "in_process_p99_ms": round(local["p99_ms"], 4),
    }
    if args.http_rate:
        if args.url:
            remote = asyncio.run(
                over_http(args.url.rstrip("/"), kb, args.http_rate, args.http_seconds, args.seed)
            )
        else:
            with own_server(args) as url:
                remote = asyncio.run(over_http(url, kb, args.http_rate, args.http_seconds, args.seed))
        print(
            f"HTTP: {remote['requests']} requests offered at {remote['offered_per_s']}/s, "
            f"{remote['achieved_per_s']:.0f}/s answered, {remote['errors']} errors, "
            f"p50 {remote['p50_ms']:.1f} ms, p99 {remote['p99_ms']:.1f} ms, "
            f"p99.9 {remote['p999_ms']:.1f} ms, max {remote['max_ms']:.1f} ms (after a 2 s warm-up)"
        )
        result.update(
            {
                "http_offered_per_s": remote["offered_per_s"],
                "http_achieved_per_s": round(remote["achieved_per_s"]),
                "http_errors": remote["errors"],
                "http_p50_ms": round(remote["p50_ms"], 2),
                "http_p99_ms": round(remote["p99_ms"], 2),
            }
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
