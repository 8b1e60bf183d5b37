"""The doctor's pages: the centre's queue and their own consultations."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ehospital.consultations.service import ConsultationService
from ehospital.directory.service import DirectoryService
from ehospital.web.common import DoctorWeb, Web
from ehospital.web.forms import EMPTY, FormState
from ehospital.web.pages.shared import centre_names, clinic_names

router = APIRouter(include_in_schema=False)


def _service(web: Web) -> ConsultationService:
    return ConsultationService(web.session, web.runtime.settings, web.runtime.files)


async def queue_page(web: Web, state: FormState = EMPTY, status_code: int = 200) -> Response:
    """Waiting consultations of the doctor's centre; unverified doctors see why they cannot help yet."""
    me = web.me
    verified = me.doctor_verified and me.is_doctor
    items = await _service(web).queue(me) if verified else []
    centres = await DirectoryService(web.session).centres(include_inactive=True)
    return web.render(
        "doctor_queue.html",
        items=items,
        verified=verified,
        centre_name=centre_names(centres, web.lang).get(me.doctor_centre_id or 0, ""),
        clinic_names=clinic_names(centres, web.lang),
        state=state,
        status_code=status_code,
        here="/doctor",
    )


@router.get("/doctor")
async def queue(web: DoctorWeb) -> Response:
    return await queue_page(web)


@router.get("/doctor/consultations")
async def my_consultations(web: DoctorWeb) -> Response:
    """Consultations assigned to me, newest first."""
    found = await _service(web).list_for(web.me, limit=100) if web.me.is_doctor else []
    centres = await DirectoryService(web.session).centres(include_inactive=True)
    return web.render(
        "consultations.html",
        consultations=found,
        centre_names=centre_names(centres, web.lang),
        clinic_names=clinic_names(centres, web.lang),
        title_key="consultations.title_doctor",
    )
