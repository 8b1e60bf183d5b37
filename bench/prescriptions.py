"""Load test: full prescription lifecycles — written, signed (Ed25519 + automatic check),
approved by the pharmacy's pharmacist, paid (signed callback), dispensed (FEFO stock) —
against a server this script starts (or --url).

    python bench/prescriptions.py --db postgresql

Prints a table, then one JSON line of name: value as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import aiohttp
from consultations import (  # bench/ is this script's folder
    Api,
    Phase,
    cpu_seconds,
    database_cpu_seconds,
    own_server,
    png,
)

from ehospital.kit import resident_id


@dataclass
class Cast:
    doctor: str
    pharmacist: str
    staff: str
    pharmacy: int
    consultations: list[int]
    patients: list[str]  # the patient token of each consultation
    codes: list[str]


async def setup(api: Api, consultations: int) -> Cast:
    """Open, accept and diagnose consultations; stock the pharmacy; sign everyone in."""
    cast = Cast(
        doctor=await api.login("dr.zhang", "doctor-demo-1"),
        pharmacist=await api.login("pharmacist", "pharmacist-demo-1"),
        staff=await api.login("pharmacy.staff", "staff-demo-1"),
        pharmacy=next(
            o["id"]
            for o in await api.ok("GET", "/api/v1/organisations")
            if o["name_en"] == "Kangjian Pharmacy"
        ),
        consultations=[],
        patients=[],
        codes=["metformin-500mg-tab", "amlodipine-5mg-tab", "atorvastatin-20mg-tab"],
    )
    for code in cast.codes:
        body = {
            "drug_code": code,
            "lot_number": f"BENCH-{uuid.uuid4().hex[:8]}",
            "expires_on": (date.today() + timedelta(days=365)).isoformat(),
            "quantity": 1_000_000,
        }
        await api.ok("POST", "/api/v1/pharmacy/stock", cast.staff, json=body)
    centre = next(c["id"] for c in await api.ok("GET", "/api/v1/centres") if c["code"] == "diabetes")
    tag = uuid.uuid4().hex[:6]
    for n in range(consultations):
        username = f"rxb-{tag}-{n}"
        await api.ok(
            "POST",
            "/api/v1/auth/register",
            json={"username": username, "password": "bench-pass-1", "display_name": username},
        )
        patient = await api.login(username, "bench-pass-1")
        born = date(1960 + n % 40, 1 + n % 12, 1 + n % 28)
        member = await api.ok(
            "POST",
            "/api/v1/patients",
            patient,
            json={
                "name": f"P{n}",
                "id_number": resident_id.make("110105", born, n % 100, "male"),
                "sex": "male",
                "birth_date": born.isoformat(),
                "relationship": "self",
            },
        )
        form = aiohttp.FormData()
        form.add_field("file", png(), filename="e.png", content_type="image/png")
        upload = await api.ok("POST", "/api/v1/uploads", patient, data=form)
        c = await api.ok(
            "POST",
            "/api/v1/consultations",
            patient,
            json={
                "patient_id": member["id"],
                "centre_id": centre,
                "visit_type": "follow_up",
                "complaint": "review",
                "prior_diagnosis": "T2DM",
                "evidence_ids": [upload["id"]],
            },
        )
        await api.ok("POST", f"/api/v1/consultations/{c['id']}/accept", cast.doctor)
        await api.ok(
            "POST",
            f"/api/v1/consultations/{c['id']}/diagnosis",
            cast.doctor,
            json={"code": "E11.9", "text": "Type 2 diabetes"},
        )
        cast.consultations.append(c["id"])
        cast.patients.append(patient)
    return cast


async def run_bench(base: str, args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2 + 8)
    async with aiohttp.ClientSession(connector=connector) as http:
        api = Api(http, base)
        print("setting up consultations and stock ...", flush=True)
        cast = await setup(api, args.consultations)
        opened, doctor, staff, pharmacy = cast.consultations, cast.doctor, cast.staff, cast.pharmacy
        patients, codes, doses = cast.patients, cast.codes, ["500", "5", "20"]
        lifecycle = Phase("lifecycle")
        steps: dict[str, Phase] = {
            name: Phase(name) for name in ("write", "sign", "approve", "pay", "dispense")
        }
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(args.prescriptions):
            queue.put_nowait(n)

        async def timed(name: str, method: str, path: str, token: str, **kw: Any) -> Any:
            started = time.perf_counter()
            status, body = await api.call(method, path, token, **kw)
            if status >= 300:
                steps[name].errors += 1
                raise RuntimeError(f"{name}: {status} {body}")
            steps[name].latencies.append(time.perf_counter() - started)
            return body

        async def one(n: int) -> None:
            i = n % len(opened)
            item = {
                "drug_code": codes[n % len(codes)],
                "dose": doses[n % len(codes)],
                "dose_unit": "mg",
                "route": "oral",
                "frequency": "qd",
                "days": 1,
                "quantity": 1,
            }
            rx = await timed(
                "write",
                "POST",
                f"/api/v1/consultations/{opened[i]}/prescriptions",
                doctor,
                json={"pharmacy_id": pharmacy, "items": [item]},
            )
            await timed("sign", "POST", f"/api/v1/prescriptions/{rx['id']}/sign", doctor)
            await timed(
                "approve",
                "POST",
                f"/api/v1/prescriptions/{rx['id']}/review",
                cast.pharmacist,
                json={"decision": "approve"},
            )
            order = (await api.call("GET", f"/api/v1/prescriptions/{rx['id']}/order", patients[i]))[1]
            await timed("pay", "POST", f"/api/v1/orders/{order['id']}/pay", patients[i])
            await timed("dispense", "POST", f"/api/v1/orders/{order['id']}/dispense", staff)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                started = time.perf_counter()
                try:
                    await one(n)
                    lifecycle.latencies.append(time.perf_counter() - started)
                except RuntimeError as exc:
                    lifecycle.errors += 1
                    print(exc, file=sys.stderr)

        print(f"running {args.prescriptions} lifecycles, {args.concurrency} at a time ...", flush=True)
        cpu = CpuMeter(getattr(args, "server_pid", None), getattr(args, "db_name", None))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        lifecycle.seconds = time.perf_counter() - started
        spent = cpu.spent()
    print(f"{'phase':<10}{'count':>8}{'errors':>8}{'per s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for ph in (lifecycle, *steps.values()):
        ph.seconds = ph.seconds or lifecycle.seconds
        print(
            f"{ph.name:<10}{len(ph.latencies):>8}{ph.errors:>8}{ph.rate:>10.1f}"
            f"{ph.pct(50):>9.1f}{ph.pct(95):>9.1f}{ph.pct(99):>9.1f}"
        )
    result: dict[str, Any] = {
        "lifecycles_per_s": round(lifecycle.rate, 1),
        "errors": lifecycle.errors,
        "lifecycle_p50_ms": round(lifecycle.pct(50), 1),
        "lifecycle_p99_ms": round(lifecycle.pct(99), 1),
    }
    for name, ph in steps.items():
        result[f"{name}_p99_ms"] = round(ph.pct(99), 1)
    if lifecycle.latencies:
        # What one lifecycle costs each party in CPU time: on a machine whose cores the server,
        # the database and this load generator share, their sum bounds the rate
        # (cores / CPU per lifecycle), whatever the concurrency.
        for party, seconds in spent.items():
            per = seconds / len(lifecycle.latencies) * 1000
            print(f"CPU per lifecycle, {party}: {per:.1f} ms")
            result[f"{party}_cpu_ms_per_lifecycle"] = round(per, 2)
    return result


class CpuMeter:
    """CPU seconds spent from now by the server's processes, the benchmark database's backends
    and this process (the load generator); the first two only when this script started them."""

    def __init__(self, server_pid: int | None, db_name: str | None) -> None:
        self.server_pid, self.db_name = server_pid, db_name
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now = {"client": usage.ru_utime + usage.ru_stime}
        if self.server_pid:
            now["server"] = cpu_seconds(self.server_pid)
        if self.db_name:
            now["database"] = database_cpu_seconds(self.db_name)
        return now

    def spent(self) -> dict[str, float]:
        return {party: seconds - self.start[party] for party, seconds in self._now().items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server with the demo; default: start one")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--workers", type=int, help="server processes (default 2 on PostgreSQL, 1 on SQLite)")
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--consultations", type=int, default=20)
    parser.add_argument("--prescriptions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="lifecycles in flight")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 2 if args.db == "postgresql" else 1
    if args.url:
        result = asyncio.run(run_bench(args.url.rstrip("/"), args))
    else:
        with own_server(args) as url:
            result = asyncio.run(run_bench(url, args))
    print(json.dumps({"db": args.db, "workers": args.workers, "concurrency": args.concurrency, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
