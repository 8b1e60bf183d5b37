"""Live chat under load (issue 7): C consultations whose patients and doctors are WebSocket
clients of N server processes on PostgreSQL + Redis.

Starts a fresh PostgreSQL database, `ehospital demo`, and N separate `ehospital serve` processes
sharing it through Redis (EHOSPITAL_BROKER_URL). Seeds doctors, patients and accepted
consultations through the public API, then:

  messages     every consultation's patient sits on process i % N and its doctor on process
               (i + 1) % N, so with N ≥ 2 every message crosses processes; each side sends at a
               fixed pace (the offered load is --rate messages/s in all) for --seconds. A message
               carries its send time; the other side records send → receipt (same clock).
               "delivered" counts messages received by the other side only (not the echo to the
               sender's own socket).
  connections  --connections idle sockets (hello + welcome) held by process 0; its RSS before
               and after gives the memory per connection.

CPU per stored message is split between the server processes, the PostgreSQL backends of the
bench database, redis-server and this client (/proc; all on one machine).

Prints a table, then one JSON line of name: value as the last line.

    python bench/chat.py --processes 2 --consultations 200 --rate 2000 --seconds 20
    python bench/chat.py --processes 1 --connections 5000 --skip-messages
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from consultations import (
    EHOSPITAL,
    PG_ADMIN,
    Api,
    _process_cpu,
    cpu_seconds,
    database_cpu_seconds,
    free_port,
    png,
    setup,
)
from websockets.asyncio.client import ClientConnection, connect

REDIS = os.environ.get("EHOSPITAL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_healthy(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not become healthy in {seconds} s")


@contextlib.contextmanager
def cluster(processes: int) -> Iterator[tuple[list[str], list[int], str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="ehospital-chat-bench-"))
    db_name = f"ehospital_chat_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f'CREATE DATABASE "{db_name}"'], check=True)
    base, _, _ = PG_ADMIN.rpartition("/")
    env = {
        **os.environ,
        "EHOSPITAL_DATA_DIR": str(data_dir),
        "EHOSPITAL_DATABASE_URL": base.replace("postgresql://", "postgresql+asyncpg://") + "/" + db_name,
        "EHOSPITAL_BROKER_URL": REDIS,
        "EHOSPITAL_LOGIN_MAX_FAILURES_ADDRESS": "1000000",
    }
    subprocess.run([EHOSPITAL, "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    procs, bases = [], []
    try:
        for _ in range(processes):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [EHOSPITAL, "serve", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                    env=env,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for b in bases:
            wait_healthy(b)
        yield bases, [p.pid for p in procs], db_name
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"server {p.pid} did not stop within 20 s of SIGTERM: killed", file=sys.stderr)
                p.kill()
                p.wait(timeout=10)
        subprocess.run(
            ["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'], check=False
        )


def redis_cpu_seconds() -> float:
    """CPU time so far of the local redis-server (0 when it is not a local process)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() == "redis-server":
                    total += _process_cpu(int(proc.name))
    return total


def ws(base: str, cid: int) -> str:
    return base.replace("http://", "ws://") + f"/api/v1/consultations/{cid}/live"


async def open_socket(base: str, cid: int, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    sock = await connect(ws(base, cid), open_timeout=60, max_queue=None, ping_interval=None)
    await sock.send(json.dumps({"type": "hello", "token": token, "after_seq": 2_000_000_000}))
    welcome = json.loads(await sock.recv())
    assert welcome["type"] == "welcome", welcome
    return sock, welcome


async def seed(base: str, args: argparse.Namespace) -> list[tuple[int, str, str]]:
    """(consultation id, patient token, doctor token) of accepted consultations."""
    tag = uuid.uuid4().hex[:6]
    setup_args = argparse.Namespace(members=4, doctors=args.doctors, patients=-(-args.consultations // 4))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:
        api = Api(http, base)
        patients, doctors, centres = await setup(api, setup_args, tag)
        image = png()
        sem = asyncio.Semaphore(8)
        chats: list[tuple[int, str, str]] = []

        async def open_one(i: int, token: str, member: int) -> None:
            async with sem:
                form = aiohttp.FormData()
                form.add_field("file", image, filename="report.png", content_type="image/png")
                evidence = await api.ok("POST", "/api/v1/uploads", token, data=form)
                body = {
                    "patient_id": member,
                    "centre_id": centres[0],
                    "visit_type": "follow_up",
                    "complaint": "glucose above target since last visit",
                    "prior_diagnosis": "Type 2 diabetes",
                    "evidence_ids": [evidence["id"]],
                }
                opened = await api.ok("POST", "/api/v1/consultations", token, json=body)
                doctor = doctors[i % len(doctors)]
                await api.ok("POST", f"/api/v1/consultations/{opened['id']}/accept", doctor)
                chats.append((opened["id"], token, doctor))

        plan = [(p.token, m) for p in patients for m in p.members][: args.consultations]
        await asyncio.gather(*(open_one(i, t, m) for i, (t, m) in enumerate(plan)))
        return chats


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def messages_phase(
    bases: list[str],
    chats: list[tuple[int, str, str]],
    args: argparse.Namespace,
    cpu: Callable[[], tuple[float, ...]],
) -> dict[str, Any]:
    """The load generator is kept cheap, as it shares the machine with what it measures:
    aiohttp's WebSocket client (its frame reader is compiled) and one pacing loop for all
    sockets instead of a sleeping task per socket."""
    n = len(bases)
    latencies: list[float] = []
    ack_latencies: list[float] = []
    counts = {"sent": 0, "acked": 0, "delivered": 0, "errors": 0}
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )
    sockets: list[tuple[aiohttp.ClientWebSocketResponse, str]] = []  # (socket, side)

    async def open_aio(base: str, cid: int, token: str) -> aiohttp.ClientWebSocketResponse:
        # autoping: the server pings every 20 s; aiohttp answers without surfacing the frame.
        sock = await http.ws_connect(ws(base, cid), autoping=True, max_msg_size=0)
        hello = {"type": "hello", "token": token, "after_seq": 2_000_000_000}
        await sock.send_str(orjson.dumps(hello).decode())
        welcome = orjson.loads((await sock.receive(timeout=60)).data)
        assert welcome["type"] == "welcome", welcome
        return sock

    for i, (cid, patient, doctor) in enumerate(chats):
        sockets.append((await open_aio(bases[i % n], cid, patient), "patient"))
        sockets.append((await open_aio(bases[(i + 1) % n], cid, doctor), "doctor"))
    pending: dict[str, float] = {}

    async def reader(sock: aiohttp.ClientWebSocketResponse, side: str) -> None:
        with contextlib.suppress(Exception):
            async for raw in sock:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.time()
                frame = orjson.loads(raw.data)
                kind = frame.get("type")
                if kind == "message":
                    m = frame["message"]
                    if m["sender_role"] != side and m["body"].startswith("t="):
                        counts["delivered"] += 1
                        latencies.append(now - float(m["body"][2:].split(" ", 1)[0]))
                elif kind == "ack":
                    sent = pending.pop(frame["client_id"], None)
                    if sent is not None:
                        counts["acked"] += 1
                        ack_latencies.append(now - sent)
                elif kind == "error":
                    counts["errors"] += 1
        if not stopping:  # the server closed it, or a frame broke the reader
            closed.append((side, sock.close_code))

    stopping = False
    closed: list[tuple[str, int | None]] = []  # sockets the server closed during the run
    readers = [asyncio.create_task(reader(s, side)) for s, side in sockets]
    cpu_before = cpu()  # the sockets are open: from here on the CPU time is the messages'
    # Message j goes out at start + j / rate from socket j mod S: every socket sends at the
    # same pace (rate / S per second), and the sockets take turns.
    started = time.monotonic()
    j = 0
    while (elapsed := time.monotonic() - started) < args.seconds:
        due = int(elapsed * args.rate)
        while j < due:
            sock, _ = sockets[j % len(sockets)]
            client_id = f"{j % len(sockets)}-{j}"
            now = time.time()
            pending[client_id] = now
            try:
                await sock.send_str(
                    orjson.dumps(
                        {"type": "send", "client_id": client_id, "body": f"t={now} glucose 7.{j % 10}"}
                    ).decode()
                )
                counts["sent"] += 1
            except Exception:
                counts["errors"] += 1
            j += 1
        await asyncio.sleep(0.001)
    sent_window = time.monotonic() - started
    # Let the last messages arrive: every send acknowledged and delivered (or 30 s passed).
    drain_until = time.monotonic() + 30
    while time.monotonic() < drain_until and (  # noqa: ASYNC110 - counters the readers update
        counts["acked"] + counts["errors"] < counts["sent"] or counts["delivered"] < counts["acked"]
    ):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # and anything that would arrive twice
    cpu_after = cpu()
    stopping = True
    counts["closed_by_server"] = len(closed)
    for s, _ in sockets:
        await s.close()
    for r in readers:
        r.cancel()
    await http.close()
    return {
        "consultations": len(chats),
        "sockets": len(sockets),
        "offered_rate": args.rate,
        "sent": counts["sent"],
        "acked": counts["acked"],
        "errors": counts["errors"],
        "closed_by_server": counts["closed_by_server"],
        "delivered": counts["delivered"],
        "delivered_per_s": round(counts["delivered"] / sent_window, 1),
        "stored_per_s": round(counts["acked"] / sent_window, 1),
        "delivery_p50_ms": round(pct(latencies, 50) * 1000, 1),
        "delivery_p99_ms": round(pct(latencies, 99) * 1000, 1),
        "ack_p50_ms": round(pct(ack_latencies, 50) * 1000, 1),
        "ack_p99_ms": round(pct(ack_latencies, 99) * 1000, 1),
        "cpu": (cpu_before, cpu_after),
    }


async def connections_phase(
    base: str, pid: int, chats: list[tuple[int, str, str]], args: argparse.Namespace
) -> dict[str, float]:
    before = rss_mib(pid)
    held: list[ClientConnection] = []
    sem = asyncio.Semaphore(64)
    started = time.monotonic()

    async def one(k: int) -> None:
        cid, patient, doctor = chats[k % len(chats)]
        async with sem:
            sock, _ = await open_socket(base, cid, patient if k % 2 else doctor)
            held.append(sock)

    await asyncio.gather(*(one(k) for k in range(args.connections)))
    opened_in = time.monotonic() - started
    await asyncio.sleep(2.0)
    after = rss_mib(pid)
    # Still alive: every socket answers a ping.
    alive = 0
    for sock in held:
        await sock.send(json.dumps({"type": "ping"}))
    for sock in held:
        with contextlib.suppress(Exception):
            while json.loads(await asyncio.wait_for(sock.recv(), 30))["type"] != "pong":
                pass
            alive += 1
    for sock in held:
        await sock.close()
    return {
        "connections": len(held),
        "connections_alive": alive,
        "connect_seconds": round(opened_in, 1),
        "server_rss_before_mib": round(before, 1),
        "server_rss_after_mib": round(after, 1),
        "kib_per_connection": round((after - before) * 1024 / max(1, len(held)), 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections * 2 + 1000)), hard))
    result: dict[str, Any] = {"processes": args.processes}
    with cluster(args.processes) as (bases, pids, db_name):
        print(f"seeding {args.consultations} consultations ...", flush=True)
        chats = await seed(bases[0], args)
        if not args.skip_messages:
            print(
                f"messages: {args.rate}/s offered for {args.seconds} s over {args.processes} process(es) ...",
                flush=True,
            )

            def cpu() -> tuple[float, ...]:
                return (
                    sum(cpu_seconds(p) for p in pids),
                    database_cpu_seconds(db_name),
                    redis_cpu_seconds(),
                    time.process_time(),
                )

            result.update(await messages_phase(bases, chats, args, cpu))
            cpu_before, cpu_after = result.pop("cpu")
            stored = max(1, int(result["acked"]))
            for name, before, after in zip(
                ("servers", "postgresql", "redis", "client"), cpu_before, cpu_after, strict=True
            ):
                spent = after - before
                # PostgreSQL backends that exit during the run take their CPU time with them:
                # a negative sum is no figure.
                result[f"cpu_ms_per_message_{name}"] = round(spent * 1000 / stored, 3) if spent >= 0 else None
            spent_all = sum(after - before for before, after in zip(cpu_before, cpu_after, strict=True))
            result["cpu_ms_per_message_all"] = round(spent_all * 1000 / stored, 3)
            # All four share this machine's cores: the rate they could reach with every core busy.
            result["cpu_bound_msg_per_s"] = round(stored / spent_all * (os.cpu_count() or 1), 1)
            result["server_cpu_note"] = "client, servers, PostgreSQL and Redis share the machine"
        if args.connections:
            print(f"connections: {args.connections} sockets on process 0 ...", flush=True)
            result.update(await connections_phase(bases[0], pids[0], chats, args))
    return result


def main() -> int:
    import signal

    # `timeout` and Ctrl-C: unwind, so the servers and the database are removed.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--consultations", type=int, default=200)
    parser.add_argument("--doctors", type=int, default=20)
    parser.add_argument("--rate", type=float, default=2000.0, help="messages per second offered, all clients")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=0, help="idle sockets to hold on process 0")
    parser.add_argument("--skip-messages", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
