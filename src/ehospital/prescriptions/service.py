"""Writing and signing prescriptions: rules only, no web framework."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.auth.models import Role
from ehospital.consultations.models import CHATTING_STATUSES
from ehospital.consultations.repository import ConsultationRepository, visibility
from ehospital.directory.models import OrganisationKind
from ehospital.directory.repository import DirectoryRepository
from ehospital.kit.context import SYSTEM, Actor
from ehospital.kit.errors import Conflict, Forbidden, NotFound, Unprocessable, require_move
from ehospital.kit.models import utcnow
from ehospital.patients.models import Patient
from ehospital.patients.service import age_on
from ehospital.prescriptions import checks, rules, signing
from ehospital.prescriptions.models import (
    SEVERITY_RANK,
    TRANSITIONS,
    DoctorKey,
    Drug,
    Finding,
    Prescription,
    PrescriptionItem,
    RxEvent,
    RxStatus,
)
from ehospital.prescriptions.repository import PrescriptionRepository
from ehospital.prescriptions.schemas import (
    DrugCreate,
    DrugRead,
    FindingRead,
    ItemRead,
    PrescriptionIn,
    PrescriptionRead,
    QueueEntry,
    ReviewIn,
    VerifyResult,
)


@dataclass(frozen=True)
class PatientContext:
    """What the reviewing pharmacist is shown of the patient."""

    name: str
    sex: str
    age: int


class RulesFailed(Unprocessable):
    """Signing refused: the body lists every rule broken, with its name and text."""

    code = "prescription_rules_failed"


def drug_read(drug: Drug) -> DrugRead:
    return DrugRead.model_validate({**drug.__dict__, "retired": drug.retired_at is not None})


def _not_found() -> NotFound:
    return NotFound("no such prescription", code="prescription_not_found")


class PrescriptionService:
    def __init__(self, session: AsyncSession, keys: signing.KeyStore) -> None:
        self.session = session
        self.keys = keys
        self.repo = PrescriptionRepository(session)
        self.consultations = ConsultationRepository(session)
        self.directory = DirectoryRepository(session)
        # What one request reads once and uses several times (signing needs the lines for the
        # rules, the signed document, the automatic check and the answer). The session's identity
        # map holds objects weakly, so it is no such cache.
        self._lines_cache: dict[int, tuple[Sequence[PrescriptionItem], dict[int, Drug]]] = {}
        self._findings_cache: dict[int, list[Finding]] = {}
        self._patients: dict[int, Patient] = {}

    # --- formulary --------------------------------------------------------------------------
    async def search_drugs(self, text: str, limit: int = 20) -> list[DrugRead]:
        return [drug_read(d) for d in await self.repo.search(text.strip(), limit)]

    async def add_drug(self, actor: Actor, data: DrugCreate) -> Drug:
        """An admin adds a product to the formulary."""
        if not actor.is_admin:
            raise Forbidden("only an administrator changes the formulary", code="admin_only")
        if await self.repo.drugs_by_code([data.code]):
            raise Conflict("a drug with this code exists", code="duplicate_code")
        drug = Drug(**{**data.model_dump(), "strength": format(data.strength.normalize(), "f")})
        self.repo.add(drug)
        await self.session.flush()
        record(self.session, actor, "create", "drug", drug.id)
        return drug

    async def retire_drug(self, actor: Actor, code: str) -> Drug:
        """Retired drugs stay in signed prescriptions but can no longer be prescribed."""
        if not actor.is_admin:
            raise Forbidden("only an administrator changes the formulary", code="admin_only")
        drug = (await self.repo.drugs_by_code([code])).get(code)
        if drug is None:
            raise NotFound("no such drug", code="drug_not_found")
        if drug.retired_at is None:
            drug.retired_at = utcnow()
            record(self.session, actor, "retire", "drug", drug.id)
        return drug

    # --- writing ----------------------------------------------------------------------------
    async def create(self, actor: Actor, consultation_id: int, data: PrescriptionIn) -> Prescription:
        """A draft prescription in a consultation assigned to the (verified) doctor."""
        if not actor.is_practising_doctor:
            raise Forbidden("only verified doctors write prescriptions", code="not_a_practising_doctor")
        consultation = await self.consultations.visible(actor, consultation_id)
        if consultation is None:
            raise NotFound("no such consultation", code="consultation_not_found")
        if consultation.status not in CHATTING_STATUSES:
            raise Conflict(f"the consultation is {consultation.status}", code="consultation_closed")
        if not consultation.diagnosis_code or not consultation.diagnosis_text:
            raise Conflict(
                "record the consultation's diagnosis first: a prescription is linked to it",
                code="diagnosis_required",
            )
        drugs = await self._drugs(data)
        await self._check_pharmacy(data.pharmacy_id)
        assert actor.doctor_id is not None
        prescription = Prescription(
            consultation_id=consultation.id,
            patient_id=consultation.patient_id,
            doctor_id=actor.doctor_id,
            version=1,
            status=RxStatus.DRAFT,
            diagnosis_code=consultation.diagnosis_code,
            diagnosis_text=consultation.diagnosis_text,
            **data.model_dump(exclude={"items"}),
        )
        self.repo.add(prescription)
        await self.session.flush()
        prescription.lineage_id = prescription.id
        items = _items(prescription.id, data, drugs)
        self.session.add_all(items)
        await self.session.flush()
        self._lines_cache[prescription.id] = (items, {d.id: d for d in drugs.values()})
        record(
            self.session, actor, "create", "prescription", prescription.id, patient_id=prescription.patient_id
        )
        return prescription

    async def update(self, actor: Actor, prescription_id: int, data: PrescriptionIn) -> Prescription:
        """Change a draft (a signed prescription is never changed: revise it instead)."""
        prescription = await self._mine(actor, prescription_id)
        if prescription.status != RxStatus.DRAFT:
            raise Conflict("a signed prescription cannot change; revise it", code="prescription_signed")
        drugs = await self._drugs(data)
        await self._check_pharmacy(data.pharmacy_id)
        for key, value in data.model_dump(exclude={"items"}).items():
            setattr(prescription, key, value)
        items = _items(prescription.id, data, drugs)
        await self.repo.replace_items(prescription.id, items)
        self._lines_cache[prescription.id] = (items, {d.id: d for d in drugs.values()})
        record(
            self.session, actor, "update", "prescription", prescription.id, patient_id=prescription.patient_id
        )
        return prescription

    async def _check_pharmacy(self, pharmacy_id: int) -> None:
        pharmacy = await self.directory.organisation(pharmacy_id)
        if pharmacy is None or pharmacy.kind != OrganisationKind.PHARMACY:
            raise Unprocessable("no such pharmacy", code="pharmacy_not_found")

    async def _drugs(self, data: PrescriptionIn) -> dict[str, Drug]:
        codes = [item.drug_code for item in data.items]
        found = await self.repo.drugs_by_code(codes)
        unknown = sorted(set(codes) - set(found))
        if unknown:
            raise Unprocessable("unknown drugs", code="unknown_drug", codes=unknown)
        return found

    # --- signing ----------------------------------------------------------------------------
    async def check(self, actor: Actor, prescription_id: int) -> list[rules.RuleFailure]:
        """The regulatory rules the draft still breaks (what the pad shows inline)."""
        prescription = await self._mine(actor, prescription_id)
        return await self._failures(prescription)

    async def sign(self, actor: Actor, prescription_id: int) -> Prescription:
        """Check the rules and sign with the doctor's key; refused with every failed rule."""
        prescription = await self._mine(actor, prescription_id)
        if prescription.status != RxStatus.DRAFT:
            raise Conflict(
                f"only a draft is signed; this one is {prescription.status}",
                code="invalid_transition",
                state=prescription.status,
                requested="sign",
            )
        consultation = await self.consultations.visible(actor, prescription.consultation_id)
        if consultation is None or consultation.status not in CHATTING_STATUSES:
            raise Conflict("the consultation is no longer open", code="consultation_closed")
        failures = await self._failures(prescription)
        if failures:
            raise RulesFailed(
                "the prescription breaks prescribing rules", failures=[f.as_dict() for f in failures]
            )
        assert actor.doctor_id is not None
        key = self.keys.private_key(actor.doctor_id)
        public = signing.public_bytes(key)
        fingerprint = signing.fingerprint(public)
        if await self.repo.key_of(actor.doctor_id, fingerprint) is None:
            try:  # the doctor's first signature; a parallel one may register the same key
                async with self.session.begin_nested():
                    self.repo.add(
                        DoctorKey(fingerprint=fingerprint, doctor_id=actor.doctor_id, public_key=public)
                    )
            except IntegrityError:
                pass
        prescription.signed_at = utcnow()
        prescription.key_fingerprint = fingerprint
        prescription.expires_at = expiry_of(prescription.signed_at, prescription.validity_days)
        self._move(actor, prescription, RxStatus.SIGNED, "sign")
        document = signing.canonical_bytes(await self.document(prescription))
        prescription.canonical = document.decode()
        prescription.signature = key.sign(document)
        await self._supersede_earlier(actor, prescription)
        await self._auto_check(actor, prescription)
        await self.session.flush()
        return prescription

    async def clinical_preview(self, actor: Actor, prescription_id: int) -> list[checks.FindingOut]:
        """What the vetting engine will say of the draft when it is signed (the pad shows it)."""
        prescription = await self._mine(actor, prescription_id)
        return checks.clinical_findings(await self._check_input(prescription))

    async def clinical_preview_of_lines(
        self, actor: Actor, consultation_id: int, lines: Sequence[checks.PadLine]
    ) -> list[checks.FindingOut]:
        """The vetting engine on lines not yet saved (the pad checks as the doctor types), for
        the patient of a consultation assigned to the doctor; unknown product codes are left to
        the save, which names them."""
        if not actor.is_practising_doctor:
            raise Forbidden("only verified doctors write prescriptions", code="not_a_practising_doctor")
        consultation = await self.consultations.visible(actor, consultation_id)
        if consultation is None:
            raise NotFound("no such consultation", code="consultation_not_found")
        patient = await self._patient(consultation.patient_id)
        drugs = await self.repo.drugs_by_code([line.code for line in lines])
        facts = checks.CheckInput(
            items=tuple(
                checks.CheckedItem(
                    n,
                    line.code,
                    drugs[line.code].generic_en,
                    drugs[line.code].atc,
                    line.days or 1,
                    dose=line.dose,
                    dose_unit=line.dose_unit,
                    route=line.route,
                    frequency=line.frequency,
                )
                for n, line in enumerate(lines, start=1)
                if line.code in drugs
            ),
            patient_age=age_on(patient.birth_date, date.today()),
            chronic=False,
            long_term=False,
            extended_reason=None,
            guardian_present=False,
            validity_days=1,
            patient_sex=patient.sex,
        )
        return checks.clinical_findings(facts) if facts.items else []

    async def _check_input(self, prescription: Prescription) -> checks.CheckInput:
        patient = await self._patient(prescription.patient_id)
        items, drugs = await self.lines(prescription.id)
        return checks.CheckInput(
            items=tuple(
                checks.CheckedItem(
                    i.position,
                    drugs[i.drug_id].code,
                    drugs[i.drug_id].generic_en,
                    drugs[i.drug_id].atc,
                    i.days,
                    dose=i.dose,
                    dose_unit=i.dose_unit,
                    route=i.route,
                    frequency=i.frequency,
                )
                for i in items
            ),
            patient_age=age_on(patient.birth_date, date.today()),
            chronic=prescription.chronic,
            long_term=prescription.long_term,
            extended_reason=prescription.extended_reason,
            guardian_present=prescription.guardian_present,
            validity_days=prescription.validity_days,
            patient_sex=patient.sex,
        )

    async def _auto_check(self, actor: Actor, prescription: Prescription) -> None:
        """Run every checker, store its findings, and put the prescription in review."""
        facts = await self._check_input(prescription)
        rank = 0
        stored: list[Finding] = []
        for checker in checks.CHECKERS:
            for found in checker(facts):
                stored.append(
                    Finding(
                        prescription_id=prescription.id,
                        rule=found.rule,
                        severity=str(found.severity),
                        message=found.message,
                        message_zh=found.message_zh,
                        evidence=json.dumps(found.evidence, ensure_ascii=False, sort_keys=True),
                        source=found.source,
                    )
                )
                rank = max(rank, SEVERITY_RANK[found.severity])
        self.session.add_all(stored)
        self._findings_cache[prescription.id] = stored
        prescription.severity_rank = rank
        self._move(actor, prescription, RxStatus.AUTO_CHECKED, "auto_check", f"highest severity rank {rank}")

    async def _supersede_earlier(self, actor: Actor, prescription: Prescription) -> None:
        """Signing version n retires the returned version it revises."""
        if prescription.version > 1 and prescription.lineage_id is not None:
            for earlier in await self.repo.versions(prescription.lineage_id):
                if earlier.id != prescription.id and earlier.status == RxStatus.RETURNED:
                    self._move(
                        actor, earlier, RxStatus.SUPERSEDED, "revise", f"replaced by #{prescription.id}"
                    )

    def _move(
        self, actor: Actor, prescription: Prescription, to: RxStatus, action: str, text: str | None = None
    ) -> None:
        advance(self.session, actor, prescription, to, action, text)

    # --- pharmacist review -------------------------------------------------------------------
    def _pharmacy_of(self, actor: Actor) -> int:
        if actor.role is not Role.PHARMACIST or actor.organisation_id is None:
            raise Forbidden("only pharmacists review prescriptions", code="not_a_pharmacist")
        return actor.organisation_id

    async def review_queue(self, actor: Actor, limit: int = 50) -> list[QueueEntry]:
        """Prescriptions waiting for this pharmacy: most severe findings first, then the oldest."""
        pharmacy_id = self._pharmacy_of(actor)
        found = await self.repo.review_queue(pharmacy_id, limit)
        record(self.session, actor, "list", "prescription_queue", pharmacy_id)
        return [
            QueueEntry(
                id=p.id,
                version=p.version,
                severity_rank=p.severity_rank,
                signed_at=p.signed_at,
                expires_at=p.expires_at,
                diagnosis_code=p.diagnosis_code,
                items=len(await self.repo.items(p.id)),
            )
            for p in found
        ]

    async def review(self, actor: Actor, prescription_id: int, data: ReviewIn) -> Prescription:
        """Approve, reject (with a reason) or return to the doctor (with a question)."""
        pharmacy_id = self._pharmacy_of(actor)
        found = await self.repo.for_review(prescription_id)
        prescription, account_id = found if found else (None, 0)
        if (
            prescription is None
            or prescription.pharmacy_id != pharmacy_id
            or prescription.status == RxStatus.DRAFT
        ):
            raise _not_found()
        if data.decision != "approve" and not (data.reason and data.reason.strip()):
            raise Unprocessable("say why when rejecting or returning", code="reason_required")
        target = {"approve": RxStatus.APPROVED, "reject": RxStatus.REJECTED, "return": RxStatus.RETURNED}
        self._move(actor, prescription, target[data.decision], f"review_{data.decision}", data.reason)
        if data.decision in ("approve", "reject"):
            # A structured line in the consultation's chat: both sides see it at once.
            from ehospital.consultations.service import post_system_line

            verb = "approved" if data.decision == "approve" else "rejected"
            await post_system_line(
                self.session, prescription.consultation_id, f"prescription {prescription.id} {verb}"
            )
        if data.decision == "approve":
            from ehospital.pharmacy.service import OrderService

            await OrderService(self.session, {}).open_for(
                prescription, account_id, await self.lines(prescription.id)
            )
        return prescription

    # --- the doctor after review --------------------------------------------------------------
    async def answer(self, actor: Actor, prescription_id: int, text: str) -> Prescription:
        """Answer the pharmacist's question without changing the prescription: back to review."""
        prescription = await self._mine(actor, prescription_id, lock=True)
        if prescription.status != RxStatus.RETURNED:
            raise Conflict(
                f"only a returned prescription is answered; this one is {prescription.status}",
                code="invalid_transition",
                state=prescription.status,
                requested="answer",
            )
        await self._no_revision_open(prescription)
        self._move(actor, prescription, RxStatus.AUTO_CHECKED, "answer", text)
        return prescription

    async def withdraw(self, actor: Actor, prescription_id: int, text: str) -> Prescription:
        """The doctor takes a prescription back before the pharmacist approves it."""
        prescription = await self._mine(actor, prescription_id, lock=True)
        self._move(actor, prescription, RxStatus.WITHDRAWN, "withdraw", text)
        return prescription

    async def revise(self, actor: Actor, prescription_id: int) -> Prescription:
        """A new draft version of a returned prescription (the old one is superseded on signing)."""
        old = await self._mine(actor, prescription_id, lock=True)
        if old.status != RxStatus.RETURNED:
            raise Conflict(
                f"only a returned prescription is revised; this one is {old.status}",
                code="invalid_transition",
                state=old.status,
                requested="revise",
            )
        latest = await self._no_revision_open(old)
        consultation = await self.consultations.visible(actor, old.consultation_id)
        if consultation is None or consultation.status not in CHATTING_STATUSES:
            # A new version could never be signed: signing needs the consultation open.
            raise Conflict("the consultation is no longer open", code="consultation_closed")
        new = Prescription(
            **{c: getattr(old, c) for c in _COPIED},
            version=latest + 1,
            status=RxStatus.DRAFT,
        )
        self.repo.add(new)
        await self.session.flush()
        self.session.add_all(
            PrescriptionItem(**{c: getattr(i, c) for c in _ITEM_COPIED}, prescription_id=new.id)
            for i in await self.repo.items(old.id)
        )
        await self.session.flush()
        record(self.session, actor, "revise", "prescription", new.id, patient_id=new.patient_id)
        return new

    async def _no_revision_open(self, prescription: Prescription) -> int:
        """A returned prescription whose revision is being drafted is settled by that draft
        (signed, it supersedes this one): answering it too would put two live versions in
        review, and a second revision would fork the lineage. Returns the lineage's latest
        version number (a discarded, i.e. withdrawn, draft keeps its number)."""
        lineage = prescription.lineage_id or prescription.id
        versions = await self.repo.versions(lineage)
        for later in versions:
            if later.version > prescription.version and later.status == RxStatus.DRAFT:
                raise Conflict(
                    f"version {later.version} of this prescription is being drafted; sign or"
                    " withdraw that one",
                    code="revision_in_progress",
                    state=prescription.status,
                    draft_id=later.id,
                )
        return max([v.version for v in versions], default=prescription.version)

    async def expire_due(self) -> int:
        """Prescriptions not approved and paid in time expire (run periodically)."""
        from ehospital.pharmacy.service import OrderService

        due = await self.repo.due_to_expire(utcnow())
        for prescription in due:
            was_approved = prescription.status == RxStatus.APPROVED
            self._move(SYSTEM, prescription, RxStatus.EXPIRED, "expire")
            if was_approved:  # its unpaid order goes with it
                await OrderService(self.session, {}).cancel_unpaid(prescription.id, "prescription expired")
        return len(due)

    async def _failures(self, prescription: Prescription) -> list[rules.RuleFailure]:
        patient = await self._patient(prescription.patient_id)
        items, drugs = await self.lines(prescription.id)
        facts = rules.RxFacts(
            items=tuple(
                rules.ItemFacts(
                    drug=rules.DrugFacts(
                        code=d.code,
                        name=f"{d.generic_en} {d.strength}{d.unit}",
                        form=d.form,
                        strength=Decimal(d.strength),
                        unit=d.unit,
                        route=d.route,
                        control=d.control,
                        retired=d.retired_at is not None,
                    ),
                    dose=Decimal(i.dose),
                    dose_unit=i.dose_unit,
                    route=i.route,
                    frequency=i.frequency,
                    days=i.days,
                    quantity=i.quantity,
                )
                for i in items
                for d in [drugs[i.drug_id]]
            ),
            patient_age=age_on(patient.birth_date, date.today()),
            chronic=prescription.chronic,
            long_term=prescription.long_term,
            extended_reason=prescription.extended_reason,
            guardian_present=prescription.guardian_present,
        )
        return rules.check(facts)

    async def document(self, prescription: Prescription) -> dict[str, Any]:
        """What the signature covers: everything a pharmacist and the patient rely on."""
        patient = await self._patient(prescription.patient_id)
        doctor = await self.directory.doctor(prescription.doctor_id)
        assert patient is not None and doctor is not None and prescription.signed_at is not None
        items, drugs = await self.lines(prescription.id)
        return {
            "prescription": {
                "id": prescription.id,
                "lineage_id": prescription.lineage_id,
                "version": prescription.version,
            },
            "consultation_id": prescription.consultation_id,
            "patient": {
                "id": patient.id,
                "name": patient.name,
                "sex": patient.sex,
                "birth_date": patient.birth_date.isoformat(),
            },
            "doctor": {"id": doctor.id, "name": doctor.name, "licence_number": doctor.licence_number},
            "diagnosis": {"code": prescription.diagnosis_code, "text": prescription.diagnosis_text},
            "chronic": prescription.chronic,
            "long_term": prescription.long_term,
            "extended_reason": prescription.extended_reason,
            "guardian_present": prescription.guardian_present,
            "validity_days": prescription.validity_days,
            "note": prescription.note,
            "signed_at": prescription.signed_at.isoformat(timespec="microseconds"),
            "key_fingerprint": prescription.key_fingerprint,
            "items": [
                {
                    "position": i.position,
                    "drug": {
                        "code": d.code,
                        "generic_en": d.generic_en,
                        "generic_zh": d.generic_zh,
                        "form": d.form,
                        "strength": d.strength,
                        "unit": d.unit,
                        "atc": d.atc,
                    },
                    "dose": i.dose,
                    "dose_unit": i.dose_unit,
                    "route": i.route,
                    "frequency": i.frequency,
                    "days": i.days,
                    "quantity": i.quantity,
                    "instructions": i.instructions,
                }
                for i in items
                for d in [drugs[i.drug_id]]
            ],
        }

    async def verify(self, prescription_id: int) -> VerifyResult:
        """Check the stored signature against the doctor's registered public key and the data."""
        prescription = await self.repo.prescription(prescription_id)
        if prescription is None:
            raise _not_found()
        if prescription.signature is None or prescription.key_fingerprint is None:
            return VerifyResult(
                prescription_id=prescription.id, valid=False, key_fingerprint=None, reason="not signed"
            )
        key = await self.repo.key_of(prescription.doctor_id, prescription.key_fingerprint)
        if key is None:
            reason = "the signing key is not registered to the prescribing doctor"
            return VerifyResult(
                prescription_id=prescription.id,
                valid=False,
                key_fingerprint=prescription.key_fingerprint,
                reason=reason,
            )
        document = signing.canonical_bytes(await self.document(prescription))
        valid = signing.verify(key.public_key, document, prescription.signature)
        return VerifyResult(
            prescription_id=prescription.id,
            valid=valid,
            key_fingerprint=prescription.key_fingerprint,
            reason=None if valid else "the prescription or its signature was altered",
        )

    async def history(self, prescription_id: int) -> list[dict[str, object]]:
        """The traceable story of a prescription and all its versions, then of its order: who
        did what, when (for `ehospital rx history` and the regulator)."""
        from ehospital.pharmacy.repository import PharmacyRepository

        prescription = await self.repo.prescription(prescription_id)
        if prescription is None:
            raise _not_found()
        lineage = prescription.lineage_id or prescription.id
        steps: list[dict[str, object]] = [
            {
                "at": e.at.isoformat(),
                "prescription_id": e.prescription_id,
                "who": username or "system",
                "role": e.actor_role,
                "action": e.action,
                "from": e.from_status,
                "to": e.to_status,
                "text": e.text,
            }
            for e, username in await self.repo.story(lineage)
        ]
        orders = PharmacyRepository(self.session)
        for version in await self.repo.versions(lineage):
            order = await orders.order_of_prescription(version.id)
            if order is not None:
                steps += [
                    {
                        "at": e.at.isoformat(),
                        "order_id": order.id,
                        "who": str(e.actor_id or "system"),
                        "action": "order",
                        "to": e.status,
                        "text": e.text,
                    }
                    for e in await orders.events(order.id)
                ]
        return sorted(steps, key=lambda step: str(step["at"]))

    # --- reading ----------------------------------------------------------------------------
    async def get(self, actor: Actor, prescription_id: int) -> Prescription:
        """A prescription of a consultation the actor may see, or a signed one sent to the
        pharmacy of the pharmacist or staff member asking."""
        prescription = await self.repo.prescription(prescription_id)
        if prescription is None:
            raise _not_found()
        for_pharmacist = (  # its pharmacy's pharmacist reviews it, its staff dispense it
            actor.role in (Role.PHARMACIST, Role.PHARMACY_STAFF)
            and actor.organisation_id == prescription.pharmacy_id
            and prescription.status != RxStatus.DRAFT
        )
        if (
            not for_pharmacist
            and await self.consultations.visible(actor, prescription.consultation_id) is None
        ):
            raise _not_found()
        if actor.is_patient and prescription.status == RxStatus.DRAFT:
            raise _not_found()  # the patient sees what the doctor signed
        record(
            self.session, actor, "read", "prescription", prescription.id, patient_id=prescription.patient_id
        )
        return prescription

    async def in_consultation(self, actor: Actor, consultation_id: int) -> list[Prescription]:
        """Every prescription (all versions) of a consultation the actor may see, oldest first;
        a patient account sees only what the doctor signed."""
        if await self.consultations.visible(actor, consultation_id) is None:
            raise NotFound("no such consultation", code="consultation_not_found")
        found = list(await self.repo.of_consultation(consultation_id, include_drafts=not actor.is_patient))
        record(self.session, actor, "list", "prescription", consultation_id)
        return found

    async def of_account(self, actor: Actor, limit: int = 100) -> list[Prescription]:
        """The signed prescriptions of the consultations the actor may see, newest first."""
        found = list(await self.repo.signed_visible(visibility(actor), limit))
        record(self.session, actor, "list", "prescription", None)
        return found

    async def latest_text(self, prescription: Prescription, action: str) -> str | None:
        """The text of the latest event of a kind (e.g. the pharmacist's question, "review_return")."""
        texts = [e.text for e in await self.repo.events(prescription.id) if e.action == action and e.text]
        return texts[-1] if texts else None

    async def for_review(self, actor: Actor, prescription_id: int) -> tuple[Prescription, PatientContext]:
        """A signed prescription sent to the pharmacist's pharmacy, with the patient's context."""
        self._pharmacy_of(actor)
        prescription = await self.get(actor, prescription_id)
        patient = await self._patient(prescription.patient_id)
        return prescription, PatientContext(
            patient.name, patient.sex, age_on(patient.birth_date, date.today())
        )

    async def _patient(self, patient_id: int) -> Patient:
        patient = self._patients.get(patient_id)
        if patient is None:
            patient = await self.session.get(Patient, patient_id)
            assert patient is not None
            self._patients[patient_id] = patient
        return patient

    async def _findings(self, prescription: Prescription) -> Sequence[Finding]:
        """Stored at signing: a draft has none, and signing has them at hand."""
        if prescription.status == RxStatus.DRAFT:
            return ()
        cached = self._findings_cache.get(prescription.id)
        return cached if cached is not None else await self.repo.findings(prescription.id)

    async def lines(self, prescription_id: int) -> tuple[Sequence[PrescriptionItem], dict[int, Drug]]:
        """A prescription's items (by position) and their drugs, read once per request."""
        cached = self._lines_cache.get(prescription_id)
        if cached is None:
            items = await self.repo.items(prescription_id)
            cached = (items, await self.repo.drugs([i.drug_id for i in items]))
            self._lines_cache[prescription_id] = cached
        return cached

    async def _mine(self, actor: Actor, prescription_id: int, *, lock: bool = False) -> Prescription:
        get = self.repo.for_update if lock else self.repo.prescription
        prescription = await get(prescription_id)
        if (
            prescription is None
            or not actor.is_practising_doctor
            or prescription.doctor_id != actor.doctor_id
        ):
            raise _not_found()
        return prescription

    async def describe(self, prescription: Prescription) -> PrescriptionRead:
        items, drugs = await self.lines(prescription.id)
        return PrescriptionRead.model_validate(
            {
                **{
                    k: getattr(prescription, k)
                    for k in PrescriptionRead.model_fields
                    if k not in ("items", "signature", "findings")
                },
                "signature": base64.b64encode(prescription.signature).decode()
                if prescription.signature
                else None,
                "items": [
                    ItemRead.model_validate({**i.__dict__, "drug": drug_read(drugs[i.drug_id])})
                    for i in items
                ],
                "findings": [FindingRead.model_validate(f) for f in await self._findings(prescription)],
            }
        )


def _items(prescription_id: int, data: PrescriptionIn, drugs: dict[str, Drug]) -> Sequence[PrescriptionItem]:
    return [
        PrescriptionItem(
            prescription_id=prescription_id,
            position=n,
            drug_id=drugs[item.drug_code].id,
            dose=format(item.dose.normalize(), "f"),  # "500", never "5E+2" (it is signed)
            dose_unit=item.dose_unit,
            route=item.route,
            frequency=item.frequency,
            days=item.days,
            quantity=item.quantity,
            instructions=item.instructions,
        )
        for n, item in enumerate(data.items, start=1)
    ]


def advance(
    session: AsyncSession,
    actor: Actor,
    prescription: Prescription,
    to: RxStatus,
    action: str,
    text: str | None = None,
) -> None:
    """The one place a prescription changes state: checks the move against TRANSITIONS (409 with
    the current state otherwise), records the event for its history and the audit row."""
    current = RxStatus(prescription.status)
    require_move(TRANSITIONS, current, to, "a prescription")
    prescription.status = to
    session.add(
        RxEvent(
            prescription_id=prescription.id,
            at=utcnow(),
            actor_id=actor.account_id or None,
            actor_role=str(actor.role) if actor.account_id else "system",
            action=action,
            from_status=str(current),
            to_status=str(to),
            text=text,
        )
    )
    record(session, actor, action, "prescription", prescription.id, patient_id=prescription.patient_id)


# Prescriptions are valid until the end of the day of issue in China (UTC+8), or 3 days if noted.
CHINA = timezone(timedelta(hours=8))


def expiry_of(signed_at: datetime, validity_days: int) -> datetime:
    local_day = signed_at.astimezone(CHINA).date() + timedelta(days=validity_days - 1)
    return datetime.combine(local_day, time(23, 59, 59), CHINA).astimezone(UTC)


_COPIED = (
    "consultation_id",
    "patient_id",
    "doctor_id",
    "lineage_id",
    "diagnosis_code",
    "diagnosis_text",
    "chronic",
    "long_term",
    "extended_reason",
    "guardian_present",
    "validity_days",
    "pharmacy_id",
    "note",
)
_ITEM_COPIED = (
    "position",
    "drug_id",
    "dose",
    "dose_unit",
    "route",
    "frequency",
    "days",
    "quantity",
    "instructions",
)
