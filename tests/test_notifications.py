"""The notification outbox: queueing with the event, the in-app inbox, the dispatcher with its
retries and its claim across processes, and the SMS and WeChat adapters against a real local
HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from ehospital.auth.models import Account, Role
from ehospital.db import create_engine, create_sessionmaker, session_scope
from ehospital.notifications.adapters import (
    DeliveryError,
    Notifier,
    Recipient,
    StableAccessToken,
    WebhookSms,
    WeChatTemplate,
    adapters_from,
    close_adapters,
)
from ehospital.notifications.models import Notification
from ehospital.notifications.service import CLAIM_LEASE, backoff, dispatch_once, queue
from tests.conftest import Database, fresh_database
from tests.personas import Persona, World

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def note(
    session: AsyncSession,
    who: Persona,
    title: str = "Low glucose",
    *,
    channels: tuple[str, ...] = ("in_app",),
    now: datetime = T0,
) -> list[Notification]:
    return queue(
        session,
        account_id=who.account.id,
        patient_id=who.family[0].id if who.family else None,
        kind="alert",
        code="urgent_low",
        subject_id=None,
        title=title,
        body="3.0 mmol/L at 08:00",
        channels=channels,
        now=now,
    )


def factory_on(session: AsyncSession) -> async_sessionmaker[AsyncSession]:
    """Sessions on the test's connection: each "transaction" of the dispatcher is a savepoint
    inside the test's own, rolled back at the end."""
    conn = session.bind
    assert isinstance(conn, AsyncConnection)
    return async_sessionmaker(
        bind=conn, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
    )


async def reload(session: AsyncSession, n: Notification) -> Notification:
    found = await session.get(Notification, n.id, populate_existing=True)
    assert found is not None
    return found


@dataclass
class FakeNotifier:
    """An in-process adapter: raises the scripted failures first, then delivers."""

    channel: str = "sms"
    failures: list[Exception] = field(default_factory=list)
    delay: float = 0.0
    sent: list[tuple[int, Recipient]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, n: Notification, recipient: Recipient) -> None:
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((n.id, recipient))


# --- queue ---------------------------------------------------------------------------------------


async def test_queue_adds_one_row_per_channel_to_the_callers_transaction(
    session: AsyncSession, world: World
) -> None:
    in_app, sms = note(session, world.alice, "x" * 300, channels=("in_app", "sms", "in_app"))
    assert in_app in session.new and sms in session.new  # added, not flushed
    await session.flush()
    assert (in_app.channel, in_app.status, in_app.sent_at, in_app.next_attempt_at) == (
        "in_app",
        "sent",
        T0,
        None,
    )
    assert (sms.channel, sms.status, sms.sent_at, sms.next_attempt_at, sms.attempts) == (
        "sms",
        "queued",
        None,
        T0,
        0,
    )
    assert len(in_app.title) == 200 and in_app.title.endswith("…")
    with pytest.raises(ValueError, match="unknown notification channel"):
        note(session, world.alice, channels=("fax",))
    with pytest.raises(ValueError, match="not the string"):
        queue(
            session,
            account_id=1,
            patient_id=None,
            kind="k",
            code="c",
            subject_id=None,
            title="t",
            body="",
            channels="sms",
        )


# --- the inbox -----------------------------------------------------------------------------------


async def test_inbox_lists_reads_and_pages(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    alice = world.alice
    first, second, third = (note(session, alice, f"n{i}")[0] for i in range(3))
    sms = note(session, alice, "by sms", channels=("sms",))[0]
    note(session, world.bob, "for Bob")
    await session.flush()

    listed = (await client.get("/api/v1/notifications", headers=alice.headers)).json()
    assert [n["title"] for n in listed] == ["n2", "n1", "n0"]  # newest first, in-app only
    assert listed[0]["code"] == "urgent_low" and listed[0]["read_at"] is None
    assert listed[0]["patient_id"] == alice.family[0].id
    page = await client.get("/api/v1/notifications", params={"limit": 2}, headers=alice.headers)
    older = await client.get(
        "/api/v1/notifications", params={"before_id": page.json()[-1]["id"]}, headers=alice.headers
    )
    assert [n["id"] for n in page.json()] == [third.id, second.id]
    assert [n["id"] for n in older.json()] == [first.id]

    read = await client.post(f"/api/v1/notifications/{second.id}/read", headers=alice.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    again = await client.post(f"/api/v1/notifications/{second.id}/read", headers=alice.headers)
    assert again.status_code == 200 and again.json()["read_at"] == read.json()["read_at"]
    unread = await client.get("/api/v1/notifications", params={"unread": "true"}, headers=alice.headers)
    assert [n["id"] for n in unread.json()] == [third.id, first.id]

    marked = await client.post("/api/v1/notifications/read-all", headers=alice.headers)
    assert marked.json() == {"marked": 2}
    assert (await client.post("/api/v1/notifications/read-all", headers=alice.headers)).json() == {
        "marked": 0
    }
    unread = await client.get("/api/v1/notifications", params={"unread": "true"}, headers=alice.headers)
    assert unread.json() == []
    bob = (
        await client.get("/api/v1/notifications", params={"unread": "true"}, headers=world.bob.headers)
    ).json()
    assert [n["title"] for n in bob] == ["for Bob"]  # Alice's read-all left Bob's alone
    assert (await reload(session, sms)).read_at is None


async def test_someone_elses_notification_is_not_found(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    bobs = note(session, world.bob, "for Bob")[0]
    sms = note(session, world.alice, channels=("sms",))[0]
    await session.flush()
    for target in (bobs.id, sms.id, 2**40):
        r = await client.post(f"/api/v1/notifications/{target}/read", headers=world.alice.headers)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "notification_not_found"
    assert (await reload(session, bobs)).read_at is None


async def test_inbox_input_is_checked(client: httpx.AsyncClient, world: World) -> None:
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"before_id": 0}):
        r = await client.get("/api/v1/notifications", params=params, headers=world.alice.headers)
        assert r.status_code == 422, params
        assert r.json()["error"]["code"] == "validation_error"
    r = await client.get("/api/v1/notifications")
    assert r.status_code == 401


# --- the dispatcher ------------------------------------------------------------------------------


def test_backoff_doubles_from_30_seconds_up_to_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]


async def test_dispatch_sends_due_notifications_once(session: AsyncSession, world: World) -> None:
    world.alice.account.phone = "13800138000"
    in_app, sms = note(session, world.alice, channels=("in_app", "sms"))
    await session.flush()
    fake = FakeNotifier()
    factory = factory_on(session)

    assert await dispatch_once(factory, {"sms": fake}, now=T0 - timedelta(seconds=1)) == 0  # not due yet
    assert await dispatch_once(factory, {"sms": fake}, now=T0) == 1
    assert fake.sent == [(sms.id, Recipient(world.alice.account.id, "13800138000", "zh"))]
    sms = await reload(session, sms)
    assert (sms.status, sms.attempts, sms.sent_at, sms.next_attempt_at, sms.error) == (
        "sent",
        1,
        T0,
        None,
        None,
    )
    assert await dispatch_once(factory, {"sms": fake}, now=T0 + timedelta(days=1)) == 0
    assert (await reload(session, in_app)).attempts == 0  # in-app ones are never dispatched


async def test_a_temporary_failure_is_retried_after_the_backoff(session: AsyncSession, world: World) -> None:
    sms = note(session, world.alice, channels=("sms",))[0]
    await session.flush()
    fake = FakeNotifier(failures=[DeliveryError("gateway busy", permanent=False)])
    factory = factory_on(session)

    assert await dispatch_once(factory, {"sms": fake}, now=T0) == 1
    sms = await reload(session, sms)
    assert (sms.status, sms.attempts, sms.error) == ("queued", 1, "gateway busy")
    assert sms.next_attempt_at == T0 + timedelta(seconds=30)
    assert await dispatch_once(factory, {"sms": fake}, now=T0 + timedelta(seconds=29)) == 0
    assert await dispatch_once(factory, {"sms": fake}, now=T0 + timedelta(seconds=30)) == 1
    sms = await reload(session, sms)
    assert (sms.status, sms.attempts, sms.sent_at, sms.error) == ("sent", 2, T0 + timedelta(seconds=30), None)
    assert [i for i, _ in fake.sent] == [sms.id]


async def test_a_permanent_failure_is_final(session: AsyncSession, world: World) -> None:
    sms = note(session, world.alice, channels=("sms",))[0]
    await session.flush()
    fake = FakeNotifier(failures=[DeliveryError("no phone number", permanent=True)])
    assert await dispatch_once(factory_on(session), {"sms": fake}, now=T0) == 1
    sms = await reload(session, sms)
    assert (sms.status, sms.attempts, sms.next_attempt_at, sms.error) == (
        "failed",
        1,
        None,
        "no phone number",
    )
    assert await dispatch_once(factory_on(session), {"sms": fake}, now=T0 + timedelta(days=1)) == 0


async def test_eight_failed_attempts_give_up(session: AsyncSession, world: World) -> None:
    sms = note(session, world.alice, channels=("sms",))[0]
    await session.flush()
    fake = FakeNotifier(failures=[RuntimeError(f"bug {i}") for i in range(9)])  # unforeseen: temporary
    factory = factory_on(session)
    at, waits = T0, []
    for _ in range(8):
        assert await dispatch_once(factory, {"sms": fake}, now=at) == 1
        sms = await reload(session, sms)
        if sms.next_attempt_at is not None:
            waits.append((sms.next_attempt_at - at).total_seconds())
            at = sms.next_attempt_at
    assert waits == [30, 60, 120, 240, 480, 960, 1920]
    assert (sms.status, sms.attempts, sms.error) == ("failed", 8, "RuntimeError: bug 7")
    assert fake.sent == []


async def test_a_channel_without_adapter_or_a_deactivated_account_fails(
    session: AsyncSession, world: World
) -> None:
    wechat = note(session, world.alice, channels=("wechat",))[0]
    world.bob.account.is_active = False
    bobs = note(session, world.bob, channels=("sms",))[0]
    await session.flush()
    fake = FakeNotifier()
    assert await dispatch_once(factory_on(session), {"sms": fake}, now=T0) == 2
    wechat, bobs = await reload(session, wechat), await reload(session, bobs)
    assert (wechat.status, wechat.error) == ("failed", "no adapter is configured for the channel 'wechat'")
    assert (bobs.status, bobs.error) == ("failed", "the account is deactivated")
    assert fake.sent == []


async def test_a_send_cut_short_is_retried_when_its_claim_lapses(session: AsyncSession, world: World) -> None:
    sms = note(session, world.alice, channels=("sms",))[0]
    await session.flush()
    factory = factory_on(session)
    slow = FakeNotifier(delay=60)
    dispatching = asyncio.create_task(dispatch_once(factory, {"sms": slow}, now=T0))
    await slow.started.wait()
    dispatching.cancel()  # the process stops mid-send: the outcome is never recorded
    with pytest.raises(asyncio.CancelledError):
        await dispatching
    sms = await reload(session, sms)
    assert (sms.status, sms.attempts, sms.next_attempt_at) == ("queued", 1, T0 + CLAIM_LEASE)

    fake = FakeNotifier()
    assert await dispatch_once(factory, {"sms": fake}, now=T0 + CLAIM_LEASE - timedelta(seconds=1)) == 0
    assert await dispatch_once(factory, {"sms": fake}, now=T0 + CLAIM_LEASE) == 1
    sms = await reload(session, sms)
    assert (sms.status, sms.attempts) == ("sent", 2)


@pytest.fixture(scope="module")
async def committed_db(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """A database of this module's own: dispatchers racing need committed rows that several
    connections see, which the rolled-back test transaction cannot give."""
    async for db in fresh_database(backend, tmp_path_factory):
        yield db


async def committed_notifications(db: Database, count: int) -> None:
    async with session_scope(create_sessionmaker(db.engine)) as s:
        await s.execute(delete(Notification))
        account = Account(
            username=f"race-{uuid.uuid4().hex[:8]}",
            password_hash="-",
            role=Role.PATIENT,
            display_name="Race",
            phone="13800138000",
        )
        s.add(account)
        await s.flush()
        for i in range(count):
            queue(
                s,
                account_id=account.id,
                patient_id=None,
                kind="reminder",
                code="measure",
                subject_id=i,
                title=f"Measure {i}",
                body="",
                channels=("sms",),
                now=T0,
            )


async def committed_states(db: Database) -> list[tuple[str, int]]:
    async with session_scope(create_sessionmaker(db.engine)) as s:
        return [
            (r.status, r.attempts)
            for r in await s.execute(select(Notification.status, Notification.attempts))
        ]


async def test_concurrent_dispatchers_never_send_one_twice(committed_db: Database) -> None:
    await committed_notifications(committed_db, 60)
    # Three "server processes": separate engines, so separate connections and transactions.
    engines = [create_engine(committed_db.settings) for _ in range(3)]
    fakes = [FakeNotifier(delay=0.002) for _ in engines]

    async def drain(factory: async_sessionmaker[AsyncSession], fake: FakeNotifier) -> int:
        total = 0
        while handled := await dispatch_once(factory, {"sms": fake}, now=T0, batch=5):
            total += handled
        return total

    try:
        totals = await asyncio.gather(
            *(drain(create_sessionmaker(e), f) for e, f in zip(engines, fakes, strict=True))
        )
    finally:
        for engine in engines:
            await engine.dispose()
    sent = [i for fake in fakes for i, _ in fake.sent]
    assert len(sent) == 60 and len(set(sent)) == 60
    assert sum(totals) == 60
    assert await committed_states(committed_db) == [("sent", 1)] * 60


async def test_rows_being_claimed_are_skipped(committed_db: Database) -> None:
    """While one dispatcher's claim is not yet committed, another takes the other rows: on
    PostgreSQL at once (SKIP LOCKED), on SQLite once the first has committed (one writer)."""
    await committed_notifications(committed_db, 10)
    claiming, release = asyncio.Event(), asyncio.Event()

    class HeldClaim(AsyncSession):
        async def commit(self) -> None:  # the first commit of dispatcher A is its claim: hold it
            claiming.set()
            await release.wait()
            await super().commit()

    engine_a, engine_b = create_engine(committed_db.settings), create_engine(committed_db.settings)
    fake_a, fake_b = FakeNotifier(), FakeNotifier()
    try:
        a = asyncio.create_task(
            dispatch_once(
                async_sessionmaker(engine_a, class_=HeldClaim, expire_on_commit=False),
                {"sms": fake_a},
                now=T0,
                batch=5,
            )
        )
        await claiming.wait()
        b = asyncio.create_task(dispatch_once(create_sessionmaker(engine_b), {"sms": fake_b}, now=T0))
        done, _ = await asyncio.wait([b], timeout=1.0)
        assert (b in done) is (committed_db.backend == "postgresql")  # SKIP LOCKED: no waiting
        release.set()
        assert (await a, await b) == (5, 5)
    finally:
        release.set()
        await engine_a.dispose()
        await engine_b.dispose()
    sent_a, sent_b = {i for i, _ in fake_a.sent}, {i for i, _ in fake_b.sent}
    assert len(sent_a) == len(sent_b) == 5 and not sent_a & sent_b
    assert await committed_states(committed_db) == [("sent", 1)] * 10


# --- the adapters against a real HTTP server -----------------------------------------------------


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeGateway:
    """A local HTTP server answering each path from a script (the last answer repeats)."""

    answers: dict[str, list[tuple[int, Any]]]
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def on(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.path, dict(request.query), dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        script = self.answers.get(request.path, [(404, {"error": "no such path"})])
        status, payload = script.pop(0) if len(script) > 1 else script[0]
        return web.json_response(payload, status=status)


@contextlib.asynccontextmanager
async def serving(gateway: FakeGateway) -> AsyncIterator[FakeGateway]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gateway.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield gateway
    finally:
        await runner.cleanup()


def message(id_: int = 7) -> Notification:
    return Notification(
        id=id_,
        account_id=3,
        channel="sms",
        kind="alert",
        code="urgent_low",
        title="血糖偏低",
        body="3.0 mmol/L",
    )


ALICE = Recipient(account_id=3, phone="13800138000", locale="zh", wechat_openid="oAlice")


async def test_webhook_sms_posts_a_signed_payload() -> None:
    async with serving(FakeGateway({"/sms": [(200, {"ok": True})]})) as gw:
        sms = WebhookSms(f"{gw.url}/sms", "s3cret")
        try:
            await sms.send(message(), ALICE)
        finally:
            await sms.aclose()
    (seen,) = gw.seen
    expected = "sha256=" + hmac.new(b"s3cret", seen.body, hashlib.sha256).hexdigest()
    assert seen.headers["X-Signature"] == expected
    assert seen.headers["Content-Type"].startswith("application/json")
    assert seen.json() == {"to": "13800138000", "text": "血糖偏低\n3.0 mmol/L", "id": 7}


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (403, True), (429, False), (500, False), (503, False)]
)
async def test_webhook_sms_failures(status: int, permanent: bool) -> None:
    async with serving(FakeGateway({"/sms": [(status, {"error": "nope"})]})) as gw:
        sms = WebhookSms(f"{gw.url}/sms", "s3cret")
        try:
            with pytest.raises(DeliveryError) as caught:
                await sms.send(message(), ALICE)
        finally:
            await sms.aclose()
    assert caught.value.permanent is permanent
    assert f"HTTP {status}" in caught.value.message


async def test_webhook_sms_timeouts_refusals_and_missing_phone() -> None:
    async with serving(FakeGateway({"/sms": [(200, {})]}, delay=1.0)) as gw:
        sms = WebhookSms(f"{gw.url}/sms", "s3cret", timeout=0.2)
        try:
            with pytest.raises(DeliveryError) as caught:
                await sms.send(message(), ALICE)
            assert not caught.value.permanent and "no answer" in caught.value.message
            with pytest.raises(DeliveryError) as caught:
                await sms.send(message(), Recipient(account_id=3, phone=None))
            assert caught.value.permanent
            assert len(gw.seen) == 1  # no request without a phone number
        finally:
            await sms.aclose()
    closed = WebhookSms(f"{gw.url}/sms", "s3cret")  # the server is gone: connection refused
    try:
        with pytest.raises(DeliveryError) as caught:
            await closed.send(message(), ALICE)
        assert not caught.value.permanent
    finally:
        await closed.aclose()


def wechat_gateway(*send_answers: tuple[int, Any], token: list[tuple[int, Any]] | None = None) -> FakeGateway:
    return FakeGateway(
        {
            "/cgi-bin/stable_token": token or [(200, {"access_token": "TOKEN1", "expires_in": 7200})],
            "/cgi-bin/message/template/send": list(send_answers),
        }
    )


async def test_wechat_template_message() -> None:
    async with serving(wechat_gateway((200, {"errcode": 0, "errmsg": "ok", "msgid": 1}))) as gw:
        tokens = StableAccessToken("wxapp", "appsecret", api_base=gw.url)
        wechat = WeChatTemplate("TPL", tokens, api_base=gw.url)
        try:
            n = message()
            n.created_at = T0
            await wechat.send(n, ALICE)
            await wechat.send(message(8), ALICE)
        finally:
            await wechat.aclose()
    (token_call,) = gw.on("/cgi-bin/stable_token")  # fetched once, then cached
    assert token_call.json() == {"grant_type": "client_credential", "appid": "wxapp", "secret": "appsecret"}
    first, second = gw.on("/cgi-bin/message/template/send")
    assert first.query == {"access_token": "TOKEN1"} and second.query == {"access_token": "TOKEN1"}
    assert first.json() == {
        "touser": "oAlice",
        "template_id": "TPL",
        "client_msg_id": "ehospital-7",
        "data": {
            "first": {"value": "血糖偏低"},
            "keyword1": {"value": "3.0 mmol/L"},
            "keyword2": {"value": "2026-11-22 16:00"},  # China time
        },
    }


async def test_wechat_refusals() -> None:
    gw = wechat_gateway(
        (200, {"errcode": 42001, "errmsg": "access_token expired"}),
        (200, {"errcode": 43004, "errmsg": "require subscribe"}),
        (200, {"errcode": -1, "errmsg": "system error"}),
        token=[
            (200, {"access_token": "OLD", "expires_in": 7200}),
            (200, {"access_token": "NEW", "expires_in": 7200}),
        ],
    )
    async with serving(gw):
        wechat = WeChatTemplate("TPL", StableAccessToken("wxapp", "s", api_base=gw.url), api_base=gw.url)
        outcomes = []
        try:
            for _ in range(3):
                with pytest.raises(DeliveryError) as caught:
                    await wechat.send(message(), ALICE)
                outcomes.append(caught.value.permanent)
            with pytest.raises(DeliveryError) as caught:
                await wechat.send(message(), Recipient(account_id=3, phone="1", wechat_openid=None))
            assert caught.value.permanent and "not linked to WeChat" in caught.value.message
        finally:
            await wechat.aclose()
    assert outcomes == [False, True, False]  # expired token: later; not subscribed: never; busy: later
    sends = gw.on("/cgi-bin/message/template/send")
    assert [s.query["access_token"] for s in sends] == ["OLD", "NEW", "NEW"]  # the expired one dropped


async def test_wechat_without_an_access_token_tries_again_later() -> None:
    gw = wechat_gateway((200, {"errcode": 0}), token=[(200, {"errcode": 40164, "errmsg": "invalid ip"})])
    async with serving(gw):
        wechat = WeChatTemplate("TPL", StableAccessToken("wxapp", "s", api_base=gw.url), api_base=gw.url)
        try:
            with pytest.raises(DeliveryError) as caught:
                await wechat.send(message(), ALICE)
        finally:
            await wechat.aclose()
    assert not caught.value.permanent and "40164" in caught.value.message
    assert gw.on("/cgi-bin/message/template/send") == []


async def test_dispatcher_with_the_sms_adapter(session: AsyncSession, world: World) -> None:
    world.alice.account.phone = "13800138000"
    sms, no_phone = (
        note(session, world.alice, channels=("sms",))[0],
        note(session, world.bob, channels=("sms",))[0],
    )
    await session.flush()
    async with serving(FakeGateway({"/sms": [(200, {"ok": True})]})) as gw:
        adapters = adapters_from(Config(sms_webhook_url=f"{gw.url}/sms", sms_webhook_secret="s3cret"))
        try:
            assert await dispatch_once(factory_on(session), adapters, now=T0) == 2
        finally:
            await close_adapters(adapters)
    assert [s.json()["id"] for s in gw.seen] == [sms.id]
    assert (await reload(session, sms)).status == "sent"
    no_phone = await reload(session, no_phone)
    assert (no_phone.status, no_phone.error) == ("failed", "the account has no phone number")


@dataclass
class Config:
    sms_webhook_url: str = ""
    sms_webhook_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_template_id: str = ""


async def test_adapters_from_configuration() -> None:
    assert adapters_from(Config()) == {}
    both = adapters_from(
        Config(
            sms_webhook_url="https://relay.example/sms",
            sms_webhook_secret="s",
            wechat_app_id="wx",
            wechat_app_secret="s",
            wechat_template_id="T",
        )
    )
    notifiers: list[Notifier] = list(both.values())
    assert {n.channel: type(n) for n in notifiers} == {"sms": WebhookSms, "wechat": WeChatTemplate}
    await close_adapters(both)
    with pytest.raises(ValueError, match="SECRET"):
        adapters_from(Config(sms_webhook_url="https://relay.example/sms"))
    with pytest.raises(ValueError, match="WECHAT"):
        adapters_from(Config(wechat_app_id="wx"))
    with pytest.raises(ValueError, match="http"):
        adapters_from(Config(sms_webhook_url="relay.example/sms", sms_webhook_secret="s"))
