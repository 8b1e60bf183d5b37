"""Typed dependencies shared by the routers: the session, the runtime, who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ehospital.audit.service import record
from ehospital.auth.models import Role
from ehospital.auth.service import AuthService
from ehospital.config import Settings
from ehospital.kit.context import Actor
from ehospital.kit.errors import DomainError, Forbidden, Unauthenticated
from ehospital.kit.storage import FileStore
from ehospital.pharmacy.payments import HmacProvider
from ehospital.prescriptions.signing import KeyStore


@dataclass
class Runtime:
    """What the app holds for its lifetime (on app.state.runtime)."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    files: FileStore
    keys: KeyStore
    payments: dict[str, HmacProvider]


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in a thread pool, which costs more than the work itself.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def record_denial(session: AsyncSession, request: Request, exc: DomainError) -> bool:
    """Audit a refused request of a signed-in caller (after its own writes were rolled back)."""
    actor: Actor | None = getattr(request.state, "actor", None)
    if actor is None or exc.status_code not in (403, 404):
        return False
    target = f"{request.method} {request.url.path}"[:64]
    record(session, actor, "denied", "request", target, outcome=exc.code[:48])
    return True


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit on success, roll back on error."""
    async with runtime.sessionmaker() as session:
        try:
            yield session
        except DomainError as exc:
            if exc.keep_writes:
                await session.commit()
            else:
                await session.rollback()
                if record_denial(session, request, exc):
                    await session.commit()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens before the response is sent, so a client that
# sees 2xx knows the data is stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_id(request: Request) -> str | None:
    rid: str | None = getattr(request.state, "request_id", None)
    return rid


async def get_actor(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Actor:
    """The caller of an API endpoint, from its bearer token."""
    if not token:
        raise Unauthenticated("sign in first (bearer token missing)", code="not_authenticated")
    actor = await AuthService(session, runtime.settings).authenticate(
        token, address=client_address(request), request_id=request_id(request), kind="bearer"
    )
    if actor is None:
        raise Unauthenticated("the token is invalid, expired or revoked", code="invalid_token")
    request.state.actor = actor
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def _role(*roles: Role) -> object:
    async def check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}", code="wrong_role")
        return actor

    return check


CurrentAdmin = Annotated[Actor, Depends(_role(Role.ADMIN))]
CurrentDoctor = Annotated[Actor, Depends(_role(Role.DOCTOR))]
CurrentPatient = Annotated[Actor, Depends(_role(Role.PATIENT))]
