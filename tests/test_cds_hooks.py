"""The CDS Hooks service: discovery, cards for order-sign and order-select, feedback."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.vetting import knowledge
from ehospital.vetting.cds import CdsRequestError, cards_for
from ehospital.vetting.fhir import RXNORM, SNOMED
from ehospital.vetting.models import CdsCard, CdsFeedback
from tests.personas import World

SERVICE = "/cds-services/ehospital-prescription-vetting"


def order(order_id: str, text: str, dose: float | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "0", "display": text}],
            "text": text,
        },
    }
    if dose is not None:
        resource["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mg"}}],
            }
        ]
    return resource


def hook_request(hook: str, orders: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
    return {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/example",
            "patientId": "p1",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": o} for o in orders],
            },
            **context,
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "female"},
            "conditions": {
                "resourceType": "Bundle",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Condition",
                            "code": {"coding": [{"system": SNOMED, "code": "431857002"}]},
                        }
                    }
                ],
            },
            "medications": {
                "resourceType": "Bundle",
                "entry": [
                    {"resource": {**order("m1", "Warfarin sodium 5 MG Oral Tablet"), "status": "active"}}
                ],
            },
            "allergies": {"resourceType": "Bundle", "entry": []},
        },
    }


async def test_discovery_lists_both_hooks(client: httpx.AsyncClient) -> None:
    r = await client.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    assert services["ehospital-prescription-vetting"]["hook"] == "order-sign"
    assert services["ehospital-prescription-vetting-select"]["hook"] == "order-select"
    assert "patient" in services["ehospital-prescription-vetting"]["prefetch"]


async def test_order_sign_answers_cards_and_records_them(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    body = hook_request(
        "order-sign",
        [
            order("o1", "Simvastatin 40 MG Oral Tablet", 40),
            order("o2", "Clarithromycin 500 MG Oral Tablet"),
            order("o3", "Metformin hydrochloride 500 MG Oral Tablet"),
        ],
    )
    r = await client.post(SERVICE, headers=world.dr_dia.headers, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    cards = answer["cards"]
    assert answer["decision"] == "block"
    by_indicator = {c["indicator"] for c in cards}
    assert "critical" in by_indicator
    for card in cards:
        assert len(card["summary"]) < 140 and card["source"]["label"] and card["detail"]
        assert card["overrideReasons"]
    interaction = next(c for c in cards if "Clarithromycin" in c["detail"] or "clarithromycin" in c["detail"])
    removals = {a["resourceId"][0] for s in interaction["suggestions"] for a in s["actions"]}
    assert removals == {"MedicationRequest/o1", "MedicationRequest/o2"}
    # The context came from prefetch: CKD stage 4 (eGFR < 30) makes metformin contraindicated,
    # and the warfarin she takes meets the simvastatin.
    details = " ".join(c["detail"] for c in cards)
    assert "eGFR is below 30" in details and "warfarin" in details
    stored = (await session.execute(select(func.count()).select_from(CdsCard))).scalar_one()
    assert stored == len(cards)


async def test_order_select_cards_only_for_the_selected_order(
    client: httpx.AsyncClient, world: World
) -> None:
    orders = [
        order("o1", "Simvastatin 40 MG Oral Tablet", 40),
        order("o2", "Clarithromycin 500 MG Oral Tablet"),
        order("o3", "Metformin hydrochloride 500 MG Oral Tablet"),
    ]
    body = hook_request("order-select", orders, selections=["MedicationRequest/o3"])
    r = await client.post(
        "/cds-services/ehospital-prescription-vetting-select", headers=world.pharmacist.headers, json=body
    )
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert cards and all("metformin" in c["detail"].lower() for c in cards)


async def test_cds_bad_calls(client: httpx.AsyncClient, world: World) -> None:
    body = hook_request("order-sign", [order("o1", "Simvastatin 40 MG Oral Tablet")])
    assert (await client.post(SERVICE, json=body)).status_code == 401
    r = await client.post(SERVICE, headers=world.alice.headers, json=body)
    assert r.status_code == 403
    r = await client.post("/cds-services/nope", headers=world.dr_dia.headers, json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_service"
    r = await client.post(SERVICE, headers=world.dr_dia.headers, json={**body, "hook": "patient-view"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "wrong_hook"
    empty = hook_request("order-sign", [])
    r = await client.post(SERVICE, headers=world.dr_dia.headers, json=empty)
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_medication_orders"
    r = await client.post(SERVICE, headers=world.dr_dia.headers, json={"hook": "order-sign"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_feedback_is_recorded_with_the_override_reason(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    body = hook_request(
        "order-sign",
        [order("o1", "Simvastatin 40 MG Oral Tablet", 40), order("o2", "Amlodipine 5 MG Oral Tablet")],
    )
    cards = (await client.post(SERVICE, headers=world.dr_dia.headers, json=body)).json()["cards"]
    card = cards[0]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": card["overrideReasons"][2], "userComment": "CK checked monthly"},
                "outcomeTimestamp": "2026-11-22T10:00:00Z",
            }
        ]
    }
    r = await client.post(f"{SERVICE}/feedback", headers=world.dr_dia.headers, json=feedback)
    assert r.status_code == 200, r.text
    row = (
        await session.execute(select(CdsFeedback).where(CdsFeedback.card_uuid == card["uuid"]))
    ).scalar_one()
    assert (row.outcome, row.override_code, row.user_comment) == (
        "overridden",
        "will-monitor",
        "CK checked monthly",
    )
    # Overridden without a reason, an unknown card, another service's card: refused, nothing written.
    no_reason = {"feedback": [{**feedback["feedback"][0], "overrideReason": None}]}
    r = await client.post(f"{SERVICE}/feedback", headers=world.dr_dia.headers, json=no_reason)
    assert r.status_code == 422 and r.json()["error"]["code"] == "override_reason_required"
    unknown = {"feedback": [{**feedback["feedback"][0], "card": "00000000-0000-0000-0000-000000000000"}]}
    r = await client.post(f"{SERVICE}/feedback", headers=world.dr_dia.headers, json=unknown)
    assert r.status_code == 404 and r.json()["error"]["code"] == "card_not_found"
    r = await client.post(
        "/cds-services/ehospital-prescription-vetting-select/feedback",
        headers=world.dr_dia.headers,
        json=feedback,
    )
    assert r.status_code == 404
    count = (await session.execute(select(func.count()).select_from(CdsFeedback))).scalar_one()
    assert count == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
fhir_keys = st.sampled_from(
    [
        "resourceType",
        "id",
        "status",
        "medicationCodeableConcept",
        "coding",
        "text",
        "code",
        "system",
        "display",
        "dosageInstruction",
        "timing",
        "repeat",
        "frequency",
        "period",
        "periodUnit",
        "doseAndRate",
        "doseQuantity",
        "value",
        "unit",
        "route",
        "birthDate",
        "gender",
        "category",
        "onsetDateTime",
        "valueQuantity",
        "entry",
        "resource",
    ]
)
fhir_like = st.recursive(
    json_values,
    lambda children: st.dictionaries(fhir_keys, children, max_size=5) | st.lists(children, max_size=3),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(fhir_like, max_size=3),
    prefetch=st.dictionaries(
        st.sampled_from(["patient", "conditions", "medications", "allergies", "egfr", "x"]),
        fhir_like | st.lists(st.dictionaries(fhir_keys, fhir_like, max_size=5), max_size=3),
        max_size=4,
    ),
    selections=json_values,
)
def test_cds_never_raises_on_any_json(orders: list[Any], prefetch: dict[str, Any], selections: Any) -> None:
    """Whatever JSON a client sends inside the request's shape, the answer is cards or a
    CdsRequestError (a 4xx), never an exception (a 500)."""
    kb = knowledge()
    drafts = [{"resourceType": "MedicationRequest", **o} if isinstance(o, dict) else o for o in orders]
    request = {
        "hook": "order-select",
        "hookInstance": "x",
        "context": {
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": d} for d in drafts]},
            "selections": selections,
        },
        "prefetch": prefetch,
    }
    try:
        cards, verdict = cards_for(kb, "ehospital-prescription-vetting-select", request)
    except CdsRequestError:
        return
    assert verdict.decision in ("block", "review", "pass")
    assert all(len(c.summary) < 140 for c in cards)


# --- a trusted EHR calls with its signed JWT ----------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Ehr:
    """A CDS client with an ES384 key, as an EHR would be configured."""

    iss = "https://ehr.example.org"

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-384",
            "kid": "k1",
            "x": _b64url(numbers.x.to_bytes(48, "big")),
            "y": _b64url(numbers.y.to_bytes(48, "big")),
        }

    def jwt(self, aud: str, **changes: Any) -> str:
        now = int(time.time())
        header = {"alg": "ES384", "typ": "JWT", "kid": "k1"}
        claims = {
            "iss": self.iss,
            "sub": "ehr-client",
            "aud": aud,
            "iat": now,
            "exp": now + 240,
            "jti": str(uuid.uuid4()),
            **changes,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA384())))
        return f"{signing_input}.{_b64url(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


async def test_a_trusted_ehr_calls_with_its_signed_jwt(
    client: httpx.AsyncClient,
    world: World,
    settings: Any,
    tmp_path: Any,
    monkeypatch: Any,
    session: AsyncSession,
) -> None:
    ehr, stranger = Ehr(), Ehr()
    clients = tmp_path / "cds-clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": ehr.iss, "keys": [ehr.jwk]}]}))
    monkeypatch.setattr(settings, "cds_clients_file", clients)
    aud = "https://testserver" + SERVICE
    body = hook_request(
        "order-sign",
        [order("o1", "Simvastatin 40 MG Oral Tablet", 40), order("o2", "Clarithromycin 500 MG Oral Tablet")],
    )

    def call(token: str, url: str = SERVICE) -> Any:
        return client.post(url, headers={"Authorization": f"Bearer {token}"}, json=body)

    token = ehr.jwt(aud)
    r = await call(token)
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "block"
    card = (
        await session.execute(select(CdsCard).where(CdsCard.uuid == r.json()["cards"][0]["uuid"]))
    ).scalar_one()
    assert card.client == ehr.iss and card.account_id is None
    # Replayed, for another service, expired, too long-lived, signed by a stranger: refused.
    refusals = {
        "replayed_jwt": call(token),
        "wrong_audience": call(ehr.jwt("https://testserver/cds-services/other")),
        "expired_jwt": call(ehr.jwt(aud, exp=int(time.time()) - 600)),
        "jwt_lifetime_too_long": call(ehr.jwt(aud, exp=int(time.time()) + 3600)),
        "invalid_signature": call(stranger.jwt(aud)),
        "unknown_cds_client": call(Ehr().jwt(aud, iss="https://unknown.example")),
        "invalid_jwt": call("a.b.c"),
    }
    for code, pending in refusals.items():
        r = await pending
        assert r.status_code == 401 and r.json()["error"]["code"] == code, (code, r.text)
    # The clinicians' bearer tokens still work beside the EHR's.
    assert (await client.post(SERVICE, headers=world.pharmacist.headers, json=body)).status_code == 200
