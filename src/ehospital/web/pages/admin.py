"""The administrator's pages: verifying doctors, and the centres and clinics of the directory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from ehospital.directory.models import OrganisationKind
from ehospital.directory.schemas import CentreCreate, CentreUpdate, ClinicCreate, ClinicUpdate
from ehospital.directory.service import DirectoryService
from ehospital.kit.errors import DomainError
from ehospital.web.common import AdminWeb, PostedForm, Web
from ehospital.web.forms import EMPTY, FormState, failed, field_error, invalid, text, values_of
from ehospital.web.pages.shared import MAX_ID, centre_names, clinic_names, id_text

router = APIRouter(include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
CENTRE_FIELDS = ("organisation_id", "code", "name_en", "name_zh", "description_en", "description_zh")
CLINIC_FIELDS = ("code", "name_en", "name_zh")


async def _doctors_page(web: Web, state: FormState = EMPTY, status_code: int = 200) -> Response:
    directory = DirectoryService(web.session)
    doctors = await directory.doctors(include_unverified=True)
    centres = await directory.centres(include_inactive=True)
    pending = [d for d in doctors if not d.verified]
    return web.render(
        "admin_doctors.html",
        pending=pending,
        verified=[d for d in doctors if d.verified],
        centre_names=centre_names(centres, web.lang),
        clinic_names=clinic_names(centres, web.lang),
        state=state,
        status_code=status_code,
        here="/admin",
    )


@router.get("/admin")
async def doctors(web: AdminWeb) -> Response:
    """Doctors awaiting verification first, then the verified ones."""
    return await _doctors_page(web)


@router.post("/admin/doctors/{doctor_id}/verify")
async def verify(doctor_id: Id, web: AdminWeb, form: PostedForm) -> Response:
    verified = text(form, "verified") == "true"
    try:
        async with web.atomic():
            await DirectoryService(web.session).verify_doctor(web.me, doctor_id, verified=verified)
    except DomainError as exc:
        return await _doctors_page(web, failed(web.t, "verify", exc, {}), exc.status_code)
    return web.redirect("/admin?notice=" + ("doctor_verified" if verified else "doctor_unverified"))


async def _centres_page(web: Web, state: FormState = EMPTY, status_code: int = 200) -> Response:
    directory = DirectoryService(web.session)
    centres = await directory.centres(include_inactive=True)
    hospitals = [o for o in await directory.organisations() if o.kind == OrganisationKind.HOSPITAL]
    return web.render(
        "admin_centres.html",
        centres=centres,
        hospitals=hospitals,
        state=state,
        status_code=status_code,
        here="/admin/centres",
    )


@router.get("/admin/centres")
async def centres(web: AdminWeb) -> Response:
    """Centres with their clinics, active or not, and the forms to add and switch them."""
    return await _centres_page(web)


async def _change(
    web: Web, form_name: str, values: dict[str, str], action: Callable[[], Awaitable[object]], notice: str
) -> Response:
    try:
        async with web.atomic():
            await action()
    except DomainError as exc:
        return await _centres_page(web, failed(web.t, form_name, exc, values), exc.status_code)
    return web.redirect(f"/admin/centres?notice={notice}")


_Form = TypeVar("_Form", bound=BaseModel)


async def _submit(
    web: Web,
    form_name: str,
    values: dict[str, str],
    model: type[_Form],
    apply: Callable[[_Form], Awaitable[object]],
    notice: str,
    payload: dict[str, object] | None = None,
) -> Response:
    """Validate a form of the centres page (`payload`, or the posted `values`) into `model`,
    then apply it; a refusal shows the page again with the form as it was posted."""
    try:
        data = model.model_validate(values if payload is None else payload)
    except ValidationError as exc:
        return await _centres_page(web, invalid(web.t, form_name, exc, values), 422)
    return await _change(web, form_name, values, lambda: apply(data), notice)


@router.post("/admin/centres")
async def create_centre(web: AdminWeb, form: PostedForm) -> Response:
    values = values_of(form, *CENTRE_FIELDS)
    service = DirectoryService(web.session)
    return await _submit(
        web,
        "centre",
        values,
        CentreCreate,
        lambda data: service.create_centre(web.me, data),
        "centre_created",
        payload={**values, "organisation_id": id_text(form, "organisation_id")},
    )


@router.post("/admin/centres/{centre_id}/clinics")
async def create_clinic(centre_id: Id, web: AdminWeb, form: PostedForm) -> Response:
    service = DirectoryService(web.session)
    return await _submit(
        web,
        f"clinic-{centre_id}",
        values_of(form, *CLINIC_FIELDS),
        ClinicCreate,
        lambda data: service.create_clinic(web.me, centre_id, data),
        "clinic_created",
    )


async def _switch(
    web: AdminWeb, form: PostedForm, change: Callable[[bool], Awaitable[object]], notice: str
) -> Response:
    """Open or close a centre or clinic from the `is_active` radio of the centres page."""
    active = {"true": True, "false": False}.get(text(form, "is_active"))
    if active is None:
        return await _centres_page(
            web, field_error(web.t, "switch", "is_active", "validation.choice", {}), 422
        )
    return await _change(web, "switch", {}, lambda: change(active), notice)


@router.post("/admin/centres/{centre_id}/active")
async def switch_centre(centre_id: Id, web: AdminWeb, form: PostedForm) -> Response:
    service = DirectoryService(web.session)
    return await _switch(
        web,
        form,
        lambda active: service.update_centre(web.me, centre_id, CentreUpdate(is_active=active)),
        "centre_switched",
    )


@router.post("/admin/clinics/{clinic_id}/active")
async def switch_clinic(clinic_id: Id, web: AdminWeb, form: PostedForm) -> Response:
    service = DirectoryService(web.session)
    return await _switch(
        web,
        form,
        lambda active: service.update_clinic(web.me, clinic_id, ClinicUpdate(is_active=active)),
        "clinic_switched",
    )


PROMISE_FIELDS = ("first_response_minutes", "close_within_hours")


@router.post("/admin/centres/{centre_id}/promises")
async def set_promises(centre_id: Id, web: AdminWeb, form: PostedForm) -> Response:
    """The centre's response-time promises: first answer (minutes) and closing (hours)."""
    service = DirectoryService(web.session)
    return await _submit(
        web,
        f"promises-{centre_id}",
        values_of(form, *PROMISE_FIELDS),
        CentreUpdate,
        lambda data: service.update_centre(web.me, centre_id, data),
        "centre_switched",
    )
