"""create_app(): middleware, error handlers, routers, web pages and background work."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ehospital import __version__
from ehospital.audit.router import router as audit_router
from ehospital.audit.service import advance_anchor, seal
from ehospital.auth.router import router as auth_router
from ehospital.config import Settings, get_settings
from ehospital.consultations.live import router as live_router
from ehospital.consultations.router import router as consultations_router
from ehospital.consultations.service import ConsultationService
from ehospital.db import create_engine, create_sessionmaker, session_scope
from ehospital.deps import Runtime
from ehospital.directory.router import router as directory_router
from ehospital.glucose.alerting import AlertService
from ehospital.glucose.care import CareService
from ehospital.glucose.mqtt import default_group, run_bridge
from ehospital.glucose.nightscout import router as nightscout_router
from ehospital.glucose.router import router as glucose_router
from ehospital.kit.errors import DomainError
from ehospital.kit.schemas import ErrorResponse
from ehospital.kit.storage import LocalFileStore
from ehospital.notifications.adapters import Notifier, adapters_from, close_adapters
from ehospital.notifications.router import router as notifications_router
from ehospital.notifications.service import dispatch_once
from ehospital.patients.router import router as patients_router
from ehospital.pharmacy.payments import HmacProvider, local_secret
from ehospital.pharmacy.router import router as pharmacy_router
from ehospital.prescriptions.router import router as prescriptions_router
from ehospital.prescriptions.service import PrescriptionService
from ehospital.prescriptions.signing import KeyStore
from ehospital.quality.router import router as quality_router
from ehospital.realtime.broker import broker_from_url
from ehospital.realtime.hub import ChatHub, set_hub
from ehospital.skin.router import router as skin_router
from ehospital.skin.service import SkinService, photo_store
from ehospital.triage.router import router as triage_router
from ehospital.vetting.knowledge import KnowledgeUnavailable, knowledge
from ehospital.vetting.router import router as vetting_router

log = logging.getLogger("ehospital")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id (or keep a sane X-Request-ID) and echo it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": jsonable_encoder(body)}, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echo where and why, never the input itself (it may be large or sensitive).
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def install_error_handlers(
    app: FastAPI,
    is_web: Callable[[Request], bool],
    render_web_error: Callable[[Request, int, str, str], Awaitable[Response]],
) -> None:
    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        if is_web(request):
            return await render_web_error(request, exc.status_code, exc.code, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if exc.status_code == 429 and "retry_after_seconds" in exc.details:
            headers = {"Retry-After": str(exc.details["retry_after_seconds"])}
        return error_response(exc.status_code, exc.code, exc.message, exc.details or None, headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(400, "malformed_json", "the request body is not valid JSON", details)
        if is_web(request):
            return await render_web_error(
                request, 422, "validation_error", "; ".join(d["msg"] for d in details)
            )
        return error_response(422, "validation_error", "the request does not match the schema", details)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if is_web(request):
            return await render_web_error(request, exc.status_code, code, str(exc.detail))
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def integrity_error(request: Request, exc: Exception) -> Response:
        # A uniqueness rule caught a request racing another one (the services check first,
        # so this is the rare concurrent case): the transaction was rolled back, nothing written.
        log.info("integrity conflict on %s %s: %s", request.method, request.url.path, exc)
        message = "the request conflicts with a change made at the same moment; reload and try again"
        if is_web(request):
            return await render_web_error(request, 409, "conflict", message)
        return error_response(409, "conflict", message)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        if is_web(request):
            return await render_web_error(request, 500, "internal_error", "something went wrong on our side")
        return error_response(500, "internal_error", "something went wrong on our side")

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(Exception, unexpected)


async def _every(seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the loop alive; a failed round is retried next time
            log.warning("background job %s failed", name, exc_info=True)


def create_app(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    """The ASGI application. `background=False` leaves out the periodic jobs (tests)."""
    settings = settings or get_settings()
    from ehospital.web.router import is_web_request, render_error_page
    from ehospital.web.router import router as web_router

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not hasattr(app.state, "runtime"):
            engine = create_engine(settings)
            app.state.runtime = Runtime(
                settings=settings,
                engine=engine,
                sessionmaker=create_sessionmaker(engine),
                files=LocalFileStore(settings.upload_dir),
                keys=KeyStore(settings.key_dir),
                payments=payment_providers(settings),
            )
        runtime: Runtime = app.state.runtime
        hub = ChatHub(broker_from_url(settings.broker_url, prefix=broker_prefix(settings)))
        await hub.start()  # a configured broker that does not answer stops the start-up
        set_hub(hub)
        try:  # the vetting engine's knowledge graph, built now rather than on a first request
            await asyncio.to_thread(knowledge)
        except KnowledgeUnavailable as exc:
            log.warning("the vetting engine is unavailable: %s", exc)
        # What start-up built lives as long as the process: keep it out of the collector's
        # full passes (which otherwise stall every request for a few hundred ms now and then).
        gc.freeze()
        notifiers = adapters_from(settings)  # half a configuration is refused at start-up
        tasks: list[asyncio.Task[None]] = []
        if background:
            tasks.append(
                asyncio.create_task(_every(settings.audit_seal_seconds, lambda: _seal(runtime), "audit-seal"))
            )
            tasks.append(asyncio.create_task(_every(30.0, lambda: _expire(runtime), "expire")))
            tasks.append(asyncio.create_task(_every(3600.0, lambda: _sweep(runtime), "upload-sweep")))
            tasks.append(
                asyncio.create_task(
                    _every(settings.glucose_watch_seconds, lambda: _glucose_watch(runtime), "glucose-watch")
                )
            )
            tasks.append(asyncio.create_task(_every(5.0, lambda: _notify(runtime, notifiers), "notify")))
            tasks.append(
                asyncio.create_task(_every(300.0, lambda: _skin_followups(runtime), "skin-followups"))
            )
            if settings.mqtt_url:
                group = settings.mqtt_group or default_group(settings.resolved_database_url())
                tasks.append(asyncio.create_task(run_bridge(settings.mqtt_url, runtime.sessionmaker, group)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_adapters(notifiers)
            batcher = getattr(app.state, "chat_batcher", None)
            if batcher is not None:
                await batcher.close()
            set_hub(None)
            await hub.close()
            with contextlib.suppress(Exception):
                await _seal(runtime)
            await runtime.engine.dispose()

    app = FastAPI(
        docs_url=None,  # served below from local files: no CDN on an offline hospital network
        redoc_url=None,
        title="ehospital",
        version=__version__,
        summary="Internet hospital: follow-up consultations with doctors of specialised centres.",
        lifespan=lifespan,
        # Every 4xx has the same body; its `code` is the machine-readable reason.
        responses={
            status: {"description": text, "model": ErrorResponse}
            for status, text in (
                (400, "Malformed request"),
                (401, "Not signed in"),
                (404, "Not found, or not yours"),
                (409, "Conflicts with the current state"),
                (422, "Invalid input"),
            )
        },
    )
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app, is_web_request, render_error_page)

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> Response:
        """200 when the database answers."""
        runtime: Runtime = request.app.state.runtime
        try:
            async with runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    install_docs(app)
    # Requests are matched against the routers in this order: the device uploads, the most
    # frequent requests, come first.
    for router in (
        glucose_router,
        nightscout_router,
        auth_router,
        patients_router,
        directory_router,
        consultations_router,
        live_router,
        prescriptions_router,
        skin_router,
        pharmacy_router,
        audit_router,
        vetting_router,
        notifications_router,
        quality_router,
        triage_router,
        web_router,
    ):
        app.include_router(router)
    from ehospital.web.router import mount_static

    mount_static(app)
    return app


def broker_prefix(settings: Settings) -> str:
    """Keys and channels of this deployment on a shared broker, named after its database (two
    deployments on one Redis never hear each other's consultations)."""
    return default_group(settings.resolved_database_url())


def payment_providers(settings: Settings) -> dict[str, HmacProvider]:
    """The payment gateways whose callbacks we accept (the local demo one for now)."""
    secret = settings.payment_local_secret.encode() or local_secret(settings.key_dir / "payment-local.secret")
    return {"local": HmacProvider("local", secret)}


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its JavaScript and CSS from the swagger-ui-bundle package."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> Response:
        return get_swagger_ui_oauth2_redirect_html()


async def _seal(runtime: Runtime) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        sealed = await seal(session, wait=False)
    if sealed:  # committed: record the new head outside the database too
        async with session_scope(runtime.sessionmaker) as session:
            await advance_anchor(session, runtime.settings.audit_anchor_path)


async def _sweep(runtime: Runtime) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await ConsultationService(session, runtime.settings, runtime.files).sweep_uploads()


async def _notify(runtime: Runtime, notifiers: Mapping[str, Notifier]) -> None:
    # A full batch means more may be due: keep going until the backlog is drained.
    while await dispatch_once(runtime.sessionmaker, notifiers, batch=100) == 100:
        pass


async def _glucose_watch(runtime: Runtime) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await AlertService(session, tuple(runtime.settings.glucose_urgent_channels)).watch()
    async with session_scope(runtime.sessionmaker) as session:
        care = CareService(session)
        await care.due_reminders()
        await care.scheduled_reports()


async def _skin_followups(runtime: Runtime) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await SkinService(session, photo_store(runtime.settings)).remind_due()


async def _expire(runtime: Runtime) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await ConsultationService(session, runtime.settings, runtime.files).expire_due()
    async with session_scope(runtime.sessionmaker) as session:
        await ConsultationService(session, runtime.settings, runtime.files).sweep_late()
    async with session_scope(runtime.sessionmaker) as session:
        await ConsultationService(session, runtime.settings, runtime.files).sweep_overdue()
    async with session_scope(runtime.sessionmaker) as session:
        await PrescriptionService(session, runtime.keys).expire_due()
