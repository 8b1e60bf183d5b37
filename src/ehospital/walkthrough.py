"""`ehospital demo --walkthrough --url URL`: the whole loop against a running server, through its
public HTTP API only — a smoke test for a deployment and a tour for a newcomer."""

from __future__ import annotations

import io
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import date
from typing import Any

from PIL import Image

from ehospital.kit import resident_id


class WalkthroughError(Exception):
    pass


class Client:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        file: tuple[str, bytes, str] | None = None,
    ) -> Any:
        headers: dict[str, str] = {}
        data: bytes | None = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif file is not None:
            boundary = secrets.token_hex(12)
            name, content, media_type = file
            data = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                    f"Content-Type: {media_type}\r\n\r\n"
                ).encode()
                + content
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise WalkthroughError(
                f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from exc
        except urllib.error.URLError as exc:
            raise WalkthroughError(f"cannot reach {self.base}: {exc.reason}") from exc

    def login(self, username: str, password: str) -> str:
        token: str = self.call(
            "POST", "/api/v1/auth/token", form={"username": username, "password": password}
        )["access_token"]
        return token


def run(base: str, emit: Callable[[dict[str, Any]], None]) -> None:
    """Patient opens, doctor accepts and prescribes, pharmacist approves, patient pays, pharmacy
    dispenses, courier delivers. Calls `emit` once per step."""
    api = Client(base)
    tag = secrets.token_hex(3)
    username, password = f"walk-{tag}", f"walk-{secrets.token_hex(6)}"
    api.call(
        "POST",
        "/api/v1/auth/register",
        json_body={
            "username": username,
            "password": password,
            "display_name": f"Walkthrough {tag}",
            "locale": "en",
        },
    )
    patient = api.login(username, password)
    born = date(1970 + secrets.randbelow(30), 1 + secrets.randbelow(12), 1 + secrets.randbelow(28))
    member = api.call(
        "POST",
        "/api/v1/patients",
        patient,
        json_body={
            "name": "Walk Through",
            "id_number": resident_id.make("110105", born, secrets.randbelow(100), "female"),
            "sex": "female",
            "birth_date": born.isoformat(),
            "relationship": "self",
        },
    )
    emit({"step": "patient_registered", "account": username, "patient_id": member["id"]})

    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (220, 220, 235)).save(photo, "PNG")
    evidence = api.call(
        "POST", "/api/v1/uploads", patient, file=("diagnosis.png", photo.getvalue(), "image/png")
    )
    centre = next(c for c in api.call("GET", "/api/v1/centres") if c["code"] == "diabetes")
    consultation = api.call(
        "POST",
        "/api/v1/consultations",
        patient,
        json_body={
            "patient_id": member["id"],
            "centre_id": centre["id"],
            "visit_type": "follow_up",
            "complaint": "fasting glucose 8-9 mmol/L for two weeks",
            "prior_diagnosis": "Type 2 diabetes",
            "prior_institution": "Huaxia Hospital of Beijing",
            "evidence_ids": [evidence["id"]],
        },
    )
    cid = consultation["id"]
    emit({"step": "consultation_opened", "consultation_id": cid, "state": consultation["status"]})

    doctor = api.login("dr.zhang", "doctor-demo-1")
    emit(
        {
            "step": "doctor_accepted",
            "state": api.call("POST", f"/api/v1/consultations/{cid}/accept", doctor)["status"],
        }
    )
    api.call(
        "POST",
        f"/api/v1/consultations/{cid}/messages",
        doctor,
        json_body={"body": "Please continue metformin 500 mg twice daily with meals."},
    )
    api.call(
        "POST",
        f"/api/v1/consultations/{cid}/diagnosis",
        doctor,
        json_body={"code": "E11.9", "text": "Type 2 diabetes mellitus without complications"},
    )
    pharmacy = next(
        o for o in api.call("GET", "/api/v1/organisations") if o["name_en"] == "Kangjian Pharmacy"
    )
    rx = api.call(
        "POST",
        f"/api/v1/consultations/{cid}/prescriptions",
        doctor,
        json_body={
            "pharmacy_id": pharmacy["id"],
            "items": [
                {
                    "drug_code": "metformin-500mg-tab",
                    "dose": "500",
                    "dose_unit": "mg",
                    "route": "oral",
                    "frequency": "bid",
                    "days": 7,
                    "quantity": 14,
                    "instructions": "with meals",
                }
            ],
        },
    )
    rx = api.call("POST", f"/api/v1/prescriptions/{rx['id']}/sign", doctor)
    emit(
        {
            "step": "prescription_signed",
            "prescription_id": rx["id"],
            "state": rx["status"],
            "key_fingerprint": rx["key_fingerprint"],
            "findings": [f["rule"] for f in rx["findings"]],
        }
    )

    pharmacist = api.login("pharmacist", "pharmacist-demo-1")
    rx = api.call(
        "POST", f"/api/v1/prescriptions/{rx['id']}/review", pharmacist, json_body={"decision": "approve"}
    )
    emit({"step": "pharmacist_approved", "prescription_id": rx["id"], "state": rx["status"]})

    order = api.call("GET", f"/api/v1/prescriptions/{rx['id']}/order", patient)
    order = api.call("POST", f"/api/v1/orders/{order['id']}/pay", patient)
    emit(
        {
            "step": "patient_paid",
            "order_id": order["id"],
            "amount_cents": order["amount_cents"],
            "state": order["status"],
        }
    )

    staff = api.login("pharmacy.staff", "staff-demo-1")
    order = api.call("POST", f"/api/v1/orders/{order['id']}/dispense", staff)
    emit({"step": "pharmacy_dispensed", "order_id": order["id"], "state": order["status"]})
    for status in ("packed", "with_courier", "delivered"):
        order = api.call(
            "POST", f"/api/v1/orders/{order['id']}/delivery", staff, json_body={"status": status}
        )
        emit({"step": f"delivery_{status}", "order_id": order["id"], "state": order["status"]})
