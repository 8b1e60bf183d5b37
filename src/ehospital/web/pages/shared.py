"""Small helpers the page modules share: ids from forms, names of centres, chat lines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import FormData

from ehospital.consultations.models import Message
from ehospital.directory.schemas import CentreRead
from ehospital.kit.context import Actor
from ehospital.kit.schemas import MAX_DB_ID
from ehospital.web.common import format_dt
from ehospital.web.forms import text
from ehospital.web.i18n import Translator

MAX_ID = MAX_DB_ID  # ids are 64-bit in the database; anything bigger is a typo or a probe


def id_text(form: FormData, key: str) -> str:
    """An id field as text for the schema to parse; out-of-range numbers are made unparseable."""
    value = text(form, key)
    if value.isascii() and value.isdigit() and int(value) > MAX_ID:
        return "out-of-range"
    return value


def centre_names(centres: Sequence[CentreRead], lang: str) -> dict[int, str]:
    return {c.id: c.name_zh if lang == "zh" else c.name_en for c in centres}


def clinic_names(centres: Sequence[CentreRead], lang: str) -> dict[int, str]:
    return {k.id: k.name_zh if lang == "zh" else k.name_en for c in centres for k in c.clinics}


# The service writes state changes into the chat as English lines; show them in the page language.
_EVENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^accepted by (?P<name>.+)$"), "event.accepted"),
    (re.compile(r"^diagnosis (?P<code>\S+) (?P<text>.*)$", re.S), "event.diagnosis"),
    (re.compile(r"^completed$"), "event.completed"),
    (re.compile(r"^video call started$"), "event.call_started"),
    (re.compile(r"^the first answer is late$"), "event.late"),
    (re.compile(r"^the consultation is past its close promise$"), "event.overdue"),
    (re.compile(r"^prescription (?P<id>\d+) approved$"), "event.rx_approved"),
    (re.compile(r"^prescription (?P<id>\d+) rejected$"), "event.rx_rejected"),
    (re.compile(r"^taken over by (?P<name>.+)$"), "event.taken_over"),
    (re.compile(r"^video call ended after (?P<duration>\d+:\d\d)$"), "event.call_ended"),
    (re.compile(r"^cancelled by the patient$"), "event.cancelled"),
    (re.compile(r"^terminated and referred to (?P<to>.*?): (?P<reason>.*)$", re.S), "event.terminated"),
)


def event_text(t: Translator, body: str) -> str:
    for pattern, key in _EVENTS:
        match = pattern.match(body)
        if match:
            return t(key, **match.groupdict())
    return body


def message_view(t: Translator, actor: Actor, message: Message) -> dict[str, Any]:
    """One chat line as pages and the polling script show it."""
    mine = message.sender_id == actor.account_id
    if message.kind == "event" or message.sender_role == "system":
        who, side = t("chat.system"), "event"
    elif mine:
        who, side = t("chat.you"), "mine"
    else:
        who, side = t.label("chat.role", message.sender_role), "theirs"
    return {
        "seq": message.seq,
        "kind": message.kind,
        "side": side,
        "who": who,
        "body": event_text(t, message.body) if side == "event" else message.body,
        "image_url": f"/files/{message.attachment_id}" if message.attachment_id else None,
        "time": format_dt(message.created_at),
    }
