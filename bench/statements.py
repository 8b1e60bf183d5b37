"""SQL statements each step of the care loop sends to the database (demo data).

    python bench/statements.py                    # SQLite
    python bench/statements.py --db postgresql    # a fresh PostgreSQL database, dropped after
    python bench/statements.py --show             # and print each statement

Counts with an engine event, the second time each step runs (caches warm). PostgreSQL sends
fewer: several rows of one table go in one INSERT there, one per row on SQLite. Prints a table,
then one JSON line of step: statements as the last line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import event

from ehospital.config import Settings
from ehospital.main import create_app

EHOSPITAL = str(Path(sys.executable).parent / "ehospital")


PG_ADMIN = os.environ.get("EHOSPITAL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--show", action="store_true", help="print every statement of the counted run")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ehospital-statements-"))
    env = {"EHOSPITAL_DATA_DIR": str(data_dir), "PATH": ""}
    db_name = None
    if args.db == "postgresql":
        db_name = f"ehospital_statements_{uuid.uuid4().hex[:8]}"
        subprocess.run(["psql", PG_ADMIN, "-qc", f'CREATE DATABASE "{db_name}"'], check=True)
        base, _, _ = PG_ADMIN.rpartition("/")
        env["EHOSPITAL_DATABASE_URL"] = base.replace("postgresql://", "postgresql+asyncpg://") + "/" + db_name
    try:
        return count_steps(data_dir, env, args.show)
    finally:
        if db_name:
            subprocess.run(
                ["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'], check=False
            )


def count_steps(data_dir: Path, env: dict[str, str], show: bool) -> int:
    subprocess.run([EHOSPITAL, "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    app = create_app(
        Settings(data_dir=data_dir, database_url=env.get("EHOSPITAL_DATABASE_URL", "")), background=False
    )
    counts: Counter[str] = Counter()
    current: list[str | None] = [None]
    printing = [False]
    with TestClient(app) as client:

        @event.listens_for(app.state.runtime.engine.sync_engine, "before_cursor_execute")
        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if current[0]:
                counts[current[0]] += 1
                if printing[0]:
                    print(f"{current[0]:<9}| {' '.join(statement.split())[:150]}")

        def token(username: str, password: str) -> dict[str, str]:
            r = client.post("/api/v1/auth/token", data={"username": username, "password": password})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        patient, doctor = token("patient", "patient-demo-1"), token("dr.zhang", "doctor-demo-1")
        pharmacist, staff = token("pharmacist", "pharmacist-demo-1"), token("pharmacy.staff", "staff-demo-1")
        photo = io.BytesIO()
        Image.new("RGB", (8, 8)).save(photo, "PNG")
        upload = client.post(
            "/api/v1/uploads", headers=patient, files={"file": ("a.png", photo.getvalue(), "image/png")}
        )
        member = client.get("/api/v1/patients", headers=patient).json()[0]["id"]
        centre = next(c["id"] for c in client.get("/api/v1/centres").json() if c["code"] == "diabetes")
        cid = client.post(
            "/api/v1/consultations",
            headers=patient,
            json={
                "patient_id": member,
                "centre_id": centre,
                "visit_type": "follow_up",
                "complaint": "review",
                "prior_diagnosis": "T2DM",
                "evidence_ids": [upload.json()["id"]],
            },
        ).json()["id"]
        client.post(f"/api/v1/consultations/{cid}/accept", headers=doctor)
        client.post(
            f"/api/v1/consultations/{cid}/diagnosis", headers=doctor, json={"code": "E11.9", "text": "T2DM"}
        )
        pharmacy = next(
            o["id"] for o in client.get("/api/v1/organisations").json() if o["kind"] == "pharmacy"
        )

        def step(name: str, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
            current[0] = name
            try:
                response = client.request(method, path, headers=headers, json=body)
            finally:
                current[0] = None
            assert response.status_code < 300, (name, response.text)
            return response.json()

        item = {
            "drug_code": "metformin-500mg-tab",
            "dose": "500",
            "dose_unit": "mg",
            "route": "oral",
            "frequency": "qd",
            "days": 1,
            "quantity": 1,
        }
        for run in range(2):
            counts.clear()
            printing[0] = show and run == 1
            step("message", "POST", f"/api/v1/consultations/{cid}/messages", doctor, {"body": "hello"})
            rx = step(
                "write",
                "POST",
                f"/api/v1/consultations/{cid}/prescriptions",
                doctor,
                {"pharmacy_id": pharmacy, "items": [item]},
            )
            step("sign", "POST", f"/api/v1/prescriptions/{rx['id']}/sign", doctor)
            step(
                "approve",
                "POST",
                f"/api/v1/prescriptions/{rx['id']}/review",
                pharmacist,
                {"decision": "approve"},
            )
            order = step("order", "GET", f"/api/v1/prescriptions/{rx['id']}/order", patient)
            step("pay", "POST", f"/api/v1/orders/{order['id']}/pay", patient)
            step("dispense", "POST", f"/api/v1/orders/{order['id']}/dispense", staff)
    for name, n in counts.items():
        print(f"{name:<10}{n:>4}")
    print(json.dumps(dict(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
