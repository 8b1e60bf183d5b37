"""Bad input gets a 4xx with a machine-readable reason, and nothing is written."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.consultations.models import Attachment, Consultation, Message
from tests.personas import World, accepted_consultation, png_bytes, upload


async def counts(session: AsyncSession) -> tuple[int, int, int]:
    async def n(model: type[Any]) -> int:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    return await n(Consultation), await n(Attachment), await n(Message)


def consultation_body(world: World, evidence: list[int], **overrides: Any) -> dict[str, Any]:
    body = {
        "patient_id": world.alice.family[0].id,
        "centre_id": world.diabetes.id,
        "visit_type": "follow_up",
        "complaint": "blood sugar high",
        "prior_diagnosis": "Type 2 diabetes",
        "evidence_ids": evidence,
    }
    body.update(overrides)
    return body


async def test_malformed_json(client: httpx.AsyncClient, world: World, session: AsyncSession) -> None:
    before = await counts(session)
    r = await client.post(
        "/api/v1/consultations",
        headers={**world.alice.headers, "Content-Type": "application/json"},
        content=b'{"patient_id": 1,',
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    assert await counts(session) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"surprise": 1}, "surprise"),
        ({"patient_id": "one"}, "patient_id"),
        ({"visit_type": "urgent"}, "visit_type"),
        ({"complaint": ""}, "complaint"),
        ({"evidence_ids": "7"}, "evidence_ids"),
    ],
)
async def test_schema_violations(
    client: httpx.AsyncClient, world: World, session: AsyncSession, overrides: dict[str, Any], field: str
) -> None:
    evidence = await upload(client, world.alice)
    before = await counts(session)
    r = await client.post(
        "/api/v1/consultations",
        headers=world.alice.headers,
        json=consultation_body(world, [evidence], **overrides),
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert any(field in d["loc"] for d in error["details"])
    assert await counts(session) == before


async def test_first_visit_is_refused(client: httpx.AsyncClient, world: World, session: AsyncSession) -> None:
    evidence = await upload(client, world.alice)
    before = await counts(session)
    r = await client.post(
        "/api/v1/consultations",
        headers=world.alice.headers,
        json=consultation_body(world, [evidence], visit_type="first"),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "first_visit_not_allowed"
    assert "follow-up" in r.json()["error"]["message"]
    assert await counts(session) == before


async def test_evidence_is_required(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/api/v1/consultations", headers=world.alice.headers, json=consultation_body(world, [])
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "evidence_required"


async def test_consultation_for_another_familys_patient(client: httpx.AsyncClient, world: World) -> None:
    evidence = await upload(client, world.alice)
    r = await client.post(
        "/api/v1/consultations",
        headers=world.alice.headers,
        json=consultation_body(world, [evidence], patient_id=world.bob.family[0].id),
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "patient_not_found"


async def test_doctor_of_another_centre_cannot_be_named(client: httpx.AsyncClient, world: World) -> None:
    evidence = await upload(client, world.alice)
    r = await client.post(
        "/api/v1/consultations",
        headers=world.alice.headers,
        json=consultation_body(world, [evidence], doctor_id=world.dr_skin.doctor_id),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "doctor_not_in_centre"


async def test_second_open_consultation_in_the_same_centre(client: httpx.AsyncClient, world: World) -> None:
    for expected in (201, 409):
        evidence = await upload(client, world.alice)
        r = await client.post(
            "/api/v1/consultations", headers=world.alice.headers, json=consultation_body(world, [evidence])
        )
        assert r.status_code == expected
    assert r.json()["error"]["code"] == "open_consultation_exists"


async def post_file(
    client: httpx.AsyncClient, world: World, data: bytes, declared: str, name: str = "f"
) -> httpx.Response:
    return await client.post(
        "/api/v1/uploads", headers=world.alice.headers, files={"file": (name, data, declared)}
    )


@pytest.mark.parametrize(
    ("data", "declared", "status", "code"),
    [
        (png_bytes(), "image/jpeg", 415, "mislabelled_file"),
        (b"MZ\x90\x00 not an image at all", "image/png", 415, "unsupported_file_type"),
        (b"hello world", "text/plain", 415, "unsupported_file_type"),
        (png_bytes()[:60], "image/png", 400, "corrupt_file"),
        (b"", "image/png", 400, "empty_file"),
        (b"%PDF-1.4 truncated", "application/pdf", 400, "corrupt_file"),
    ],
)
async def test_bad_uploads(
    client: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    data: bytes,
    declared: str,
    status: int,
    code: str,
) -> None:
    before = await counts(session)
    r = await post_file(client, world, data, declared)
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert await counts(session) == before


async def test_oversize_upload(client: httpx.AsyncClient, world: World, session: AsyncSession) -> None:
    before = await counts(session)
    limit = 10 * 1024 * 1024
    r = await post_file(client, world, png_bytes() + b"\0" * limit, "image/png")
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    assert await counts(session) == before


async def test_pdf_evidence_is_accepted_but_not_as_a_chat_image(
    client: httpx.AsyncClient, world: World
) -> None:
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    assert (await post_file(client, world, pdf, "application/pdf")).status_code == 201
    r = await client.post(
        "/api/v1/uploads?purpose=message",
        headers=world.alice.headers,
        files={"file": ("a.pdf", pdf, "application/pdf")},
    )
    assert r.status_code == 415


async def test_exif_is_stripped(client: httpx.AsyncClient, world: World) -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0)}  # GPS latitude
    with_exif = png_bytes(fmt="JPEG", exif=exif.tobytes())
    assert b"PhoneMaker" in with_exif
    r = await post_file(client, world, with_exif, "image/jpeg", "face.jpg")
    assert r.status_code == 201
    stored = (await client.get(f"/api/v1/attachments/{r.json()['id']}", headers=world.alice.headers)).content
    assert b"PhoneMaker" not in stored and b"Exif" not in stored
    assert Image.open(io.BytesIO(stored)).getexif() == {}


async def test_bad_icd10_code(client: httpx.AsyncClient, world: World) -> None:
    c = await accepted_consultation(client, world)
    r = await client.post(
        f"/api/v1/consultations/{c['id']}/diagnosis",
        headers=world.dr_dia.headers,
        json={"code": "diabetes", "text": "T2DM"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_unknown_routes_and_methods(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.delete("/api/v1/centres")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = await client.get("/api/v1/consultations/not-a-number", headers=world.alice.headers)
    assert r.status_code == 422


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(
            [
                "patient_id",
                "centre_id",
                "visit_type",
                "complaint",
                "prior_diagnosis",
                "evidence_ids",
                "doctor_id",
                "clinic_id",
                "x",
            ]
        ),
        json_values,
        max_size=8,
    )
)
async def test_no_request_body_produces_a_500(
    client: httpx.AsyncClient, world: World, body: dict[str, Any]
) -> None:
    for url in ("/api/v1/consultations", "/api/v1/patients"):
        r = await client.post(url, headers=world.alice.headers, json=body)
        assert 400 <= r.status_code < 500, (url, body, r.text)
        assert "code" in r.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/consultations/100000000000000000000",
        "/api/v1/patients/9223372036854775808",
        "/api/v1/attachments/0",
        "/api/v1/doctors/99999999999999999999999",
        "/api/v1/consultations/1/messages?after_seq=3000000000",
    ],
)
async def test_out_of_range_numbers_are_422(client: httpx.AsyncClient, world: World, url: str) -> None:
    r = await client.get(url, headers=world.alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_huge_ids_in_bodies_are_422(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/api/v1/consultations", headers=world.alice.headers, json=consultation_body(world, [10**20])
    )
    assert r.status_code == 422


async def test_unicode_digits_in_an_id_number(client: httpx.AsyncClient, world: World) -> None:
    body = {
        "name": "X",
        "id_number": "²" * 18,
        "sex": "male",
        "birth_date": "1990-01-01",
        "relationship": "other",
    }
    r = await client.post("/api/v1/patients", headers=world.alice.headers, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_id_number"


async def test_roster_times_with_offsets_are_refused(client: httpx.AsyncClient, world: World) -> None:
    slots = [
        {"weekday": 0, "starts": "09:00", "ends": "10:00"},
        {"weekday": 0, "starts": "12:00+08:00", "ends": "13:00"},
    ]
    r = await client.put(
        f"/api/v1/doctors/{world.dr_dia.doctor_id}/roster", headers=world.dr_dia.headers, json=slots
    )
    assert r.status_code == 422


async def test_a_png_with_a_broken_header_is_corrupt(client: httpx.AsyncClient, world: World) -> None:
    broken = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0bIHDR" + b"\x00" * 15
    r = await post_file(client, world, broken, "image/png")
    assert r.status_code == 400 and r.json()["error"]["code"] == "corrupt_file"
