"""The `ehospital` command as a user runs it: demo, serve, audit verify."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

EHOSPITAL = str(Path(sys.executable).parent / "ehospital")


def run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EHOSPITAL_DATA_DIR": str(data_dir)}
    env.pop("EHOSPITAL_DATABASE_URL", None)
    return subprocess.run([EHOSPITAL, *args], env=env, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_demo_seeds_once_and_prints_accounts(tmp_path: Path) -> None:
    first = run(["demo"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "seeded" in first.stdout
    for username in ("patient", "dr.zhang", "pharmacist", "manager", "admin"):
        assert username in first.stdout
    second = run(["demo"], tmp_path)
    assert second.returncode == 0 and "already present" in second.stdout
    with sqlite3.connect(tmp_path / "ehospital.sqlite3") as db:
        codes = {row[0] for row in db.execute("SELECT code FROM centres")}
        clinics = db.execute(
            "SELECT count(*) FROM clinics JOIN centres ON centres.id = clinics.centre_id WHERE centres.code = 'skin'"
        ).fetchone()[0]
        pharmacies = db.execute("SELECT count(*) FROM organisations WHERE kind = 'pharmacy'").fetchone()[0]
        doctors = dict(
            db.execute(
                "SELECT centres.code, count(*) FROM doctors JOIN centres ON centres.id = doctors.centre_id GROUP BY 1"
            ).fetchall()
        )
    assert {"diabetes", "senior", "rare", "kidney", "respiratory", "cardiology", "skin"} <= codes
    assert clinics == 7 and pharmacies == 2
    assert all(n >= 3 for n in doctors.values()), doctors


def test_serve_answers_healthz_and_docs(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "EHOSPITAL_DATA_DIR": str(tmp_path)}
    env.pop("EHOSPITAL_DATABASE_URL", None)
    server = subprocess.Popen(
        [EHOSPITAL, "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.2)
        assert r.json()["status"] == "ok"
        docs = httpx.get(f"http://127.0.0.1:{port}/docs")
        assert docs.status_code == 200
        # Swagger UI is served from the installed package, not a CDN (hospital networks are closed).
        assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
        assert httpx.get(f"http://127.0.0.1:{port}/docs/assets/swagger-ui-bundle.js").status_code == 200
        spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert "/api/v1/consultations" in spec["paths"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_audit_verify_reports_the_first_broken_link(tmp_path: Path) -> None:
    assert run(["demo"], tmp_path).returncode == 0
    # Produce audited activity through the service layer as a client would.
    from fastapi.testclient import TestClient

    from ehospital.config import Settings
    from ehospital.main import create_app

    app = create_app(Settings(data_dir=tmp_path), background=False)
    with TestClient(app) as client:
        token = client.post("/api/v1/auth/token", data={"username": "patient", "password": "patient-demo-1"})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for _ in range(3):
            assert client.get("/api/v1/patients", headers=headers).status_code == 200
    ok = run(["audit", "verify"], tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert '"ok": true' in ok.stdout
    with sqlite3.connect(tmp_path / "ehospital.sqlite3") as db:
        db.execute("UPDATE audit_events SET address = '10.0.0.1' WHERE seq = 2")
    broken = run(["audit", "verify"], tmp_path)
    assert broken.returncode == 1
    assert "BROKEN at row 2" in broken.stderr


def test_audit_verify_catches_removed_newest_rows(tmp_path: Path) -> None:
    assert run(["demo"], tmp_path).returncode == 0
    from fastapi.testclient import TestClient

    from ehospital.config import Settings
    from ehospital.main import create_app

    with TestClient(create_app(Settings(data_dir=tmp_path), background=False)) as client:
        token = client.post("/api/v1/auth/token", data={"username": "patient", "password": "patient-demo-1"})
        for _ in range(3):
            client.get(
                "/api/v1/patients", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
    assert run(["audit", "verify"], tmp_path).returncode == 0
    assert (tmp_path / "audit-head.json").exists()
    with sqlite3.connect(tmp_path / "ehospital.sqlite3") as db:
        db.execute("DELETE FROM audit_events WHERE seq >= (SELECT max(seq) - 1 FROM audit_events)")
    broken = run(["audit", "verify"], tmp_path)
    assert broken.returncode == 1 and "were removed" in broken.stderr


@pytest.mark.parametrize("args", [["nonsense"], ["serve", "--port", "eighty"], ["audit"]])
def test_bad_command_lines_exit_2_with_usage(args: list[str], tmp_path: Path) -> None:
    result = run(args, tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr


@pytest.mark.parametrize(
    ("env", "args", "code", "says"),
    [
        ({"EHOSPITAL_DATABASE_URL": "garbage"}, ["demo"], 2, "is not a database URL"),
        (
            {"EHOSPITAL_DATABASE_URL": "postgresql+asyncpg://u:secret@127.0.0.1:9/x"},
            ["audit", "verify"],
            1,
            "cannot use the database postgresql+asyncpg://u:***@127.0.0.1:9/x",
        ),
        ({"EHOSPITAL_SESSION_HOURS": "many"}, ["demo"], 2, "invalid configuration"),
        ({}, ["serve", "--port", "70000"], 2, "is not a TCP port"),
    ],
)
def test_bad_configuration_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], args: list[str], code: int, says: str
) -> None:
    full_env = {**os.environ, "EHOSPITAL_DATA_DIR": str(tmp_path), **env}
    result = subprocess.run([EHOSPITAL, *args], env=full_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == code
    assert says in result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_demo_walkthrough_drives_the_whole_loop(tmp_path: Path) -> None:
    assert run(["demo"], tmp_path).returncode == 0
    port = free_port()
    env = {**os.environ, "EHOSPITAL_DATA_DIR": str(tmp_path)}
    env.pop("EHOSPITAL_DATABASE_URL", None)
    server = subprocess.Popen(
        [EHOSPITAL, "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        walk = run(["demo", "--walkthrough", "--url", f"http://127.0.0.1:{port}"], tmp_path)
        assert walk.returncode == 0, walk.stderr
        steps = [json.loads(line) for line in walk.stdout.splitlines()]
        assert steps[-1]["state"] == "delivered"
        assert [s["step"] for s in steps][:4] == [
            "patient_registered",
            "consultation_opened",
            "doctor_accepted",
            "prescription_signed",
        ]
        assert run(["demo", "--walkthrough"], tmp_path).returncode == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
    unreachable = run(["demo", "--walkthrough", "--url", f"http://127.0.0.1:{port}"], tmp_path)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
