"""`ehospital rx verify ID` as a regulator would run it."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from ehospital.config import Settings
from ehospital.main import create_app
from tests.test_cli import run


def test_rx_verify_checks_the_signature(tmp_path: Path) -> None:
    assert run(["demo"], tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "ehospital.sqlite3") as db:
        db.execute(
            "INSERT INTO drugs (code, generic_en, generic_zh, form, strength, unit, route, atc, rx_only, control,"
            " price_cents, category, created_at) VALUES ('cli-metformin', 'metformin', '二甲双胍', 'tablet', '500',"
            " 'mg', 'oral', 'A10BA02', 1, 'none', 30, 'diabetes', '2026-01-01 00:00:00')"
        )
    photo = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(photo, "PNG")
    with TestClient(create_app(Settings(data_dir=tmp_path), background=False)) as client:

        def token(username: str, password: str) -> dict[str, str]:
            r = client.post("/api/v1/auth/token", data={"username": username, "password": password})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        patient, doctor = token("patient", "patient-demo-1"), token("dr.zhang", "doctor-demo-1")
        upload = client.post(
            "/api/v1/uploads", headers=patient, files={"file": ("r.png", photo.getvalue(), "image/png")}
        )
        member = client.get("/api/v1/patients", headers=patient).json()[0]["id"]
        centre = next(c["id"] for c in client.get("/api/v1/centres").json() if c["code"] == "diabetes")
        c = client.post(
            "/api/v1/consultations",
            headers=patient,
            json={
                "patient_id": member,
                "centre_id": centre,
                "visit_type": "follow_up",
                "complaint": "glucose high",
                "prior_diagnosis": "T2DM",
                "evidence_ids": [upload.json()["id"]],
            },
        ).json()
        assert client.post(f"/api/v1/consultations/{c['id']}/accept", headers=doctor).status_code == 200
        client.post(
            f"/api/v1/consultations/{c['id']}/diagnosis",
            headers=doctor,
            json={"code": "E11.9", "text": "T2DM"},
        )
        pharmacy = next(
            o["id"] for o in client.get("/api/v1/organisations").json() if o["kind"] == "pharmacy"
        )
        rx = client.post(
            f"/api/v1/consultations/{c['id']}/prescriptions",
            headers=doctor,
            json={
                "pharmacy_id": pharmacy,
                "items": [
                    {
                        "drug_code": "cli-metformin",
                        "dose": "500",
                        "dose_unit": "mg",
                        "route": "oral",
                        "frequency": "bid",
                        "days": 7,
                        "quantity": 14,
                    }
                ],
            },
        ).json()
        assert client.post(f"/api/v1/prescriptions/{rx['id']}/sign", headers=doctor).status_code == 200
    story = run(["rx", "history", str(rx["id"])], tmp_path)
    assert story.returncode == 0, story.stderr
    steps = [json.loads(line) for line in story.stdout.splitlines()]
    assert [(s["who"], s["action"]) for s in steps] == [("dr.zhang", "sign"), ("dr.zhang", "auto_check")]
    ok = run(["rx", "verify", str(rx["id"])], tmp_path)
    assert ok.returncode == 0 and '"valid": true' in ok.stdout, ok.stdout + ok.stderr
    with sqlite3.connect(tmp_path / "ehospital.sqlite3") as db:
        db.execute("UPDATE prescription_items SET days = 6, quantity = 12")
    bad = run(["rx", "verify", str(rx["id"])], tmp_path)
    assert bad.returncode == 1 and "NOT valid" in bad.stderr
    missing = run(["rx", "verify", "999"], tmp_path)
    assert missing.returncode == 1 and "no such prescription" in missing.stderr
