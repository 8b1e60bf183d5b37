"""Sign-in, tokens, revocation, throttling and doctor verification."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.models import AccessToken, LoginAttempt
from ehospital.auth.service import token_hash
from ehospital.kit.models import utcnow
from tests.personas import PASSWORD, World, open_consultation


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": username, "password": password})


async def test_password_flow_issues_a_short_lived_bearer_token(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await login(client, "alice", PASSWORD)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 3600
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == "alice" and me.json()["role"] == "patient"


async def test_wrong_password_and_unknown_user_look_the_same(client: httpx.AsyncClient, world: World) -> None:
    wrong = await login(client, "alice", "not her password")
    unknown = await login(client, "nobody", "whatever1")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_failed_logins_are_stored_and_throttled_per_account(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    for _ in range(5):
        assert (await login(client, "alice", "bad password")).status_code == 401
    failures = await session.scalar(
        select(func.count()).select_from(LoginAttempt).where(LoginAttempt.username == "alice")
    )
    assert failures == 5  # stored although each request failed
    blocked = await login(client, "alice", PASSWORD)  # even the right password now waits
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_login_attempts"
    assert int(blocked.headers["retry-after"]) > 0
    assert (await login(client, "bob", PASSWORD)).status_code == 200  # other accounts are unaffected


async def test_failed_logins_are_throttled_per_address(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    # 30 failures from one address across many usernames (a spraying attack).
    now = utcnow()
    session.add_all(
        LoginAttempt(username=f"user{i}", address="203.0.113.7", at=now, success=False) for i in range(30)
    )
    await session.flush()
    r = await login(client, "bob", PASSWORD)
    assert r.status_code == 429


async def test_logout_revokes_the_token(client: httpx.AsyncClient, world: World) -> None:
    assert (await client.get("/api/v1/auth/me", headers=world.alice.headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=world.alice.headers)).status_code == 204
    r = await client.get("/api/v1/auth/me", headers=world.alice.headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_revoke_one_token_and_all_tokens(client: httpx.AsyncClient, world: World) -> None:
    second = (await login(client, "alice", PASSWORD)).json()["access_token"]
    third = (await login(client, "alice", PASSWORD)).json()["access_token"]
    r = await client.post("/api/v1/auth/revoke", headers=world.alice.headers, data={"token": second})
    assert r.status_code == 200
    assert (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {second}"})
    ).status_code == 401
    # Bob cannot revoke Alice's token.
    await client.post("/api/v1/auth/revoke", headers=world.bob.headers, data={"token": third})
    assert (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {third}"})
    ).status_code == 200
    r = await client.post("/api/v1/auth/revoke-all", headers=world.alice.headers)
    assert r.json()["revoked"] == 2
    assert (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {third}"})
    ).status_code == 401


async def test_expired_token_is_refused(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await session.execute(
        update(AccessToken)
        .where(AccessToken.token_hash == token_hash(world.alice.token))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    assert (await client.get("/api/v1/auth/me", headers=world.alice.headers)).status_code == 401


async def test_only_the_hash_of_a_token_is_stored(world: World, session: AsyncSession) -> None:
    stored = (await session.scalars(select(AccessToken.token_hash))).all()
    assert token_hash(world.alice.token) in stored
    assert all(world.alice.token.encode() not in h for h in stored)


async def test_register_patient_then_sign_in(client: httpx.AsyncClient, world: World) -> None:
    body = {"username": "carol", "password": "long enough pw", "display_name": "Carol"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    again = await client.post("/api/v1/auth/register", json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "username_taken"
    assert (await login(client, "carol", "long enough pw")).status_code == 200


async def test_doctor_must_be_verified_before_accepting(client: httpx.AsyncClient, world: World) -> None:
    consultation = await open_consultation(client, world)
    url = f"/api/v1/consultations/{consultation['id']}/accept"
    r = await client.post(url, headers=world.dr_new.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "doctor_not_verified"
    assert (await client.get("/api/v1/admin/doctors?unverified=true", headers=world.admin.headers)).json()[0][
        "id"
    ] == world.dr_new.doctor_id
    doctor_id = world.dr_new.doctor_id
    r = await client.post(f"/api/v1/doctors/{doctor_id}/verify", headers=world.dr_dia.headers, json={})
    assert r.status_code == 403  # only an admin verifies
    r = await client.post(f"/api/v1/doctors/{doctor_id}/verify", headers=world.admin.headers, json={})
    assert r.status_code == 200 and r.json()["verified"] is True
    assert (await client.post(url, headers=world.dr_new.headers)).status_code == 200


async def test_doctor_registration_creates_an_unverified_doctor(
    client: httpx.AsyncClient, world: World
) -> None:
    body = {
        "username": "dr.fresh",
        "password": "long enough pw",
        "name": "Dr Fresh",
        "licence_number": "110123456789",
        "title": "attending_physician",
        "institution": "County Hospital",
        "centre_id": world.diabetes.id,
        "price_cents": 3000,
    }
    r = await client.post("/api/v1/auth/register/doctor", json=body)
    assert r.status_code == 201 and r.json()["verified"] is False
    # Not listed publicly until verified.
    listed = (await client.get(f"/api/v1/doctors?centre_id={world.diabetes.id}")).json()
    assert "Dr Fresh" not in [d["name"] for d in listed]
    r = await client.post("/api/v1/auth/register/doctor", json={**body, "username": "dr.fresh2"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_licence"


async def test_a_password_is_kept_exactly_as_typed(client: httpx.AsyncClient, world: World) -> None:
    body = {"username": "dora", "password": "  spaced out  ", "display_name": "Dora"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    assert (await login(client, "dora", "  spaced out  ")).status_code == 200
    assert (await login(client, "dora", "spaced out")).status_code == 401
