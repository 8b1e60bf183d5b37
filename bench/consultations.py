"""Load test: simulated patients open follow-up consultations and chat with doctors.

Starts its own server (SQLite or a fresh PostgreSQL database) unless --url points at one,
seeds it through the public API, then measures three phases:

  open      POST /api/v1/consultations (evidence uploaded beforehand, measured as `upload`)
  accept    doctors take consultations from the queue
  messages  patients and doctors post chat messages concurrently

Prints a table, then one JSON line of name: value as the last line.

    python bench/consultations.py --db sqlite
    python bench/consultations.py --db postgresql --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from ehospital.kit import resident_id

PG_ADMIN = os.environ.get("EHOSPITAL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
EHOSPITAL = str(Path(sys.executable).parent / "ehospital")
PASSWORD = "bench-password-1"


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def timed_all(phase: Phase, jobs: list[Callable[[], Awaitable[bool]]], concurrency: int) -> None:
    """Run jobs with at most `concurrency` in flight, recording each one's latency."""
    queue: asyncio.Queue[Callable[[], Awaitable[bool]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            started = time.perf_counter()
            ok = await job()
            if ok:
                phase.latencies.append(time.perf_counter() - started)
            else:
                phase.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.http = session
        self.base = base

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.json(content_type=None)
            return r.status, body

    async def ok(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        status, body = await self.call(method, path, token, **kw)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {body}")
        return body

    async def login(self, username: str, password: str) -> str:
        body = await self.ok("POST", "/api/v1/auth/token", data={"username": username, "password": password})
        token: str = body["access_token"]
        return token


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 80, 80)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Patient:
    token: str
    members: list[int]


async def setup(api: Api, args: argparse.Namespace, tag: str) -> tuple[list[Patient], list[str], list[int]]:
    admin = await api.login("admin", "admin-demo-1")
    centres = [c["id"] for c in await api.ok("GET", "/api/v1/centres")]
    diabetes = centres[0]

    async def make_doctor(i: int) -> str:
        body = {
            "username": f"b{tag}.dr{i}",
            "password": PASSWORD,
            "name": f"Bench Doctor {i}",
            "licence_number": f"B{tag}{i:06d}",
            "title": "attending_physician",
            "institution": "Bench Hospital",
            "centre_id": diabetes,
            "price_cents": 1000,
        }
        doctor = await api.ok("POST", "/api/v1/auth/register/doctor", json=body)
        await api.ok("POST", f"/api/v1/doctors/{doctor['id']}/verify", admin, json={"verified": True})
        return await api.login(body["username"], PASSWORD)

    async def make_patient(i: int) -> Patient:
        username = f"b{tag}.p{i}"
        await api.ok(
            "POST",
            "/api/v1/auth/register",
            json={"username": username, "password": PASSWORD, "display_name": f"Bench Patient {i}"},
        )
        token = await api.login(username, PASSWORD)
        members = []
        for m in range(args.members):
            born = date(1950 + (i + m) % 60, 1 + m % 12, 1 + i % 28)
            sex: resident_id.Sex = "male" if m % 2 else "female"
            body = {
                "name": f"P{i}-{m}",
                "id_number": resident_id.make("110105", born, m, sex),
                "sex": sex,
                "birth_date": born.isoformat(),
                "relationship": "self" if m == 0 else "child",
            }
            members.append((await api.ok("POST", "/api/v1/patients", token, json=body))["id"])
        return Patient(token, members)

    sem = asyncio.Semaphore(8)

    async def limited(coro: Awaitable[Any]) -> Any:
        async with sem:
            return await coro

    doctors = await asyncio.gather(*(limited(make_doctor(i)) for i in range(args.doctors)))
    patients = await asyncio.gather(*(limited(make_patient(i)) for i in range(args.patients)))
    return list(patients), list(doctors), centres


async def run_bench(base: str, args: argparse.Namespace) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    async with aiohttp.ClientSession(connector=connector) as http:
        api = Api(http, base)
        print("setting up accounts ...", flush=True)
        patients, doctors, centres = await setup(api, args, tag)
        image = png()

        # Evidence uploads (one per consultation to open).
        plan = [(p, member, centre) for p in patients for member in p.members for centre in centres]
        evidence: dict[tuple[int, int], int] = {}
        upload = Phase("upload")

        def upload_job(p: Patient, member: int, centre: int) -> Callable[[], Awaitable[bool]]:
            async def job() -> bool:
                form = aiohttp.FormData()
                form.add_field("file", image, filename="report.png", content_type="image/png")
                status, body = await api.call("POST", "/api/v1/uploads", p.token, data=form)
                if status == 201:
                    evidence[(member, centre)] = body["id"]
                return status == 201

            return job

        await timed_all(upload, [upload_job(*x) for x in plan], args.concurrency)

        opened: dict[int, list[int]] = {}  # centre -> consultation ids
        owner: dict[int, Patient] = {}
        open_phase = Phase("open")

        def open_job(p: Patient, member: int, centre: int) -> Callable[[], Awaitable[bool]]:
            async def job() -> bool:
                body = {
                    "patient_id": member,
                    "centre_id": centre,
                    "visit_type": "follow_up",
                    "complaint": "glucose above target since last visit",
                    "prior_diagnosis": "Type 2 diabetes",
                    "evidence_ids": [evidence[(member, centre)]],
                }
                status, result = await api.call("POST", "/api/v1/consultations", p.token, json=body)
                if status == 201:
                    opened.setdefault(centre, []).append(result["id"])
                    owner[result["id"]] = p
                return status == 201

            return job

        await timed_all(
            open_phase, [open_job(*x) for x in plan if (x[1], x[2]) in evidence], args.concurrency
        )

        # Each doctor accepts up to 10 consultations of the diabetes centre.
        accept = Phase("accept")
        chats: list[tuple[int, Patient, str]] = []
        queue = list(opened.get(centres[0], []))

        def accept_job(cid: int, token: str) -> Callable[[], Awaitable[bool]]:
            async def job() -> bool:
                status, _ = await api.call("POST", f"/api/v1/consultations/{cid}/accept", token)
                if status == 200:
                    chats.append((cid, owner[cid], token))
                return status == 200

            return job

        jobs = [
            accept_job(cid, doctors[i % len(doctors)]) for i, cid in enumerate(queue[: 10 * len(doctors)])
        ]
        await timed_all(accept, jobs, min(args.concurrency, len(doctors)))

        messages = Phase("messages")
        rng = random.Random(7)

        def message_job(n: int) -> Callable[[], Awaitable[bool]]:
            cid, patient, doctor = chats[n % len(chats)]
            token = doctor if rng.random() < 0.5 else patient.token
            body = {"body": f"message {n}: fasting glucose 7.{n % 10} mmol/L this morning"}

            async def job() -> bool:
                status, _ = await api.call("POST", f"/api/v1/consultations/{cid}/messages", token, json=body)
                return status == 201

            return job

        print(f"{len(chats)} live consultations; sending {args.messages} messages ...", flush=True)
        await timed_all(messages, [message_job(n) for n in range(args.messages)], args.concurrency)

    phases = [upload, open_phase, accept, messages]
    print(f"{'phase':<10}{'count':>8}{'errors':>8}{'per s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for ph in phases:
        print(
            f"{ph.name:<10}{len(ph.latencies):>8}{ph.errors:>8}{ph.rate:>10.1f}"
            f"{ph.pct(50):>9.1f}{ph.pct(95):>9.1f}{ph.pct(99):>9.1f}"
        )
    result: dict[str, float] = {}
    for ph in phases:
        result[f"{ph.name}_per_s"] = round(ph.rate, 1)
        result[f"{ph.name}_errors"] = ph.errors
        for p in (50, 95, 99):
            result[f"{ph.name}_p{p}_ms"] = round(ph.pct(p), 2)
    result["consultations_opened_per_s"] = result["open_per_s"]
    result["messages_per_s"] = result["messages_per_s"]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants so far (Linux /proc);
    with the server's pid, what the server processes have spent, the load generator excluded."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += _process_cpu(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return total


def database_cpu_seconds(db_name: str) -> float:
    """CPU time so far of the PostgreSQL backends connected to one database (same machine:
    their process titles name the database)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                title = (proc / "cmdline").read_bytes().decode(errors="replace")
                if title.startswith("postgres:") and f" {db_name} " in title:
                    total += _process_cpu(int(proc.name))
    return total


@contextlib.contextmanager
def own_server(args: argparse.Namespace) -> Iterator[str]:
    """A fresh server on a fresh database, torn down afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="ehospital-bench-"))
    env = {**os.environ, "EHOSPITAL_DATA_DIR": str(data_dir)}
    db_name = None
    if args.db == "postgresql":
        db_name = f"ehospital_bench_{uuid.uuid4().hex[:8]}"
        subprocess.run(["psql", PG_ADMIN, "-qc", f'CREATE DATABASE "{db_name}"'], check=True)
        base, _, _ = PG_ADMIN.rpartition("/")
        env["EHOSPITAL_DATABASE_URL"] = base.replace("postgresql://", "postgresql+asyncpg://") + "/" + db_name
        env["EHOSPITAL_DB_POOL_SIZE"] = str(args.pool)
    else:
        env.pop("EHOSPITAL_DATABASE_URL", None)
    # Sign-in throttling would count the benchmark's own logins from 127.0.0.1.
    env["EHOSPITAL_LOGIN_MAX_FAILURES_ADDRESS"] = "1000000"
    subprocess.run([EHOSPITAL, "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        [
            EHOSPITAL,
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        args.server_pid, args.db_name = server.pid, db_name
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
        if db_name:
            subprocess.run(
                ["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'], check=False
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server (it must have the demo seeded); default: start one")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--workers", type=int, help="server processes to start (default: 2 on PostgreSQL, 1 on SQLite)"
    )
    parser.add_argument("--pool", type=int, default=10, help="PostgreSQL connections per process")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--members", type=int, default=3, help="family members per patient account")
    parser.add_argument("--doctors", type=int, default=10)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    if args.workers is None:
        # SQLite has one writer: a second process only adds lock waits (docs/PERFORMANCE.md).
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
