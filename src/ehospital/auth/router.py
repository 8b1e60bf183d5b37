"""Sign-in (OAuth2 password flow), registration, logout and token revocation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status

from ehospital.auth.schemas import AccountRead, PatientAccountCreate, RevokedCount, TokenResponse
from ehospital.auth.service import AuthService, register_patient_account
from ehospital.deps import CurrentActor, RuntimeDep, SessionDep, client_address
from ehospital.directory.schemas import DoctorRead, DoctorRegister
from ehospital.directory.service import DirectoryService
from ehospital.kit.context import SYSTEM
from ehospital.kit.errors import BadRequest

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", response_model=TokenResponse)
async def token(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=128)],
    grant_type: Annotated[str, Form()] = "password",
) -> TokenResponse:
    """Exchange a username and password for a short-lived bearer token."""
    if grant_type != "password":
        raise BadRequest("only grant_type=password is supported", code="unsupported_grant_type")
    issued = await AuthService(session, runtime.settings).login(
        username, password, address=client_address(request)
    )
    return TokenResponse(access_token=issued.token, expires_in=runtime.settings.access_token_minutes * 60)


@router.post("/register", response_model=AccountRead, status_code=status.HTTP_201_CREATED)
async def register(data: PatientAccountCreate, session: SessionDep) -> AccountRead:
    """Create a patient account."""
    account = await register_patient_account(
        session, data.username, data.password, data.display_name, data.phone, data.locale
    )
    return AccountRead.model_validate(account)


@router.post("/register/doctor", response_model=DoctorRead, status_code=status.HTTP_201_CREATED)
async def register_doctor(data: DoctorRegister, session: SessionDep) -> DoctorRead:
    """Create a doctor account; it consults only after an administrator verifies it."""
    doctor = await DirectoryService(session).register_doctor(data, SYSTEM)
    return await DirectoryService(session).doctor(doctor.id, include_unverified=True)


@router.get("/me", response_model=AccountRead)
async def me(actor: CurrentActor) -> AccountRead:
    """Who the token belongs to."""
    return AccountRead(
        id=actor.account_id,
        username=actor.username,
        role=actor.role,
        display_name=actor.display_name,
        locale=actor.locale,
        doctor_id=actor.doctor_id,
        doctor_verified=actor.doctor_verified if actor.doctor_id else None,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(actor: CurrentActor, session: SessionDep, runtime: RuntimeDep) -> None:
    """Revoke the token this request carries."""
    await AuthService(session, runtime.settings).logout(actor)


@router.post("/revoke", status_code=status.HTTP_200_OK)
async def revoke(
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    token: Annotated[str, Form(max_length=200)],
) -> dict[str, str]:
    """Revoke one of your tokens (RFC 7009); unknown tokens are ignored."""
    await AuthService(session, runtime.settings).revoke(actor, token)
    return {}


@router.post("/revoke-all", response_model=RevokedCount)
async def revoke_all(actor: CurrentActor, session: SessionDep, runtime: RuntimeDep) -> RevokedCount:
    """Sign out everywhere: revoke every token and web session of your account."""
    return RevokedCount(revoked=await AuthService(session, runtime.settings).revoke_all(actor))
