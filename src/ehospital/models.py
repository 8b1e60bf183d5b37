"""Every table, imported in one place so metadata is complete (Alembic, tests)."""

from ehospital.audit.models import AuditEvent
from ehospital.auth.models import AccessToken, Account, LoginAttempt
from ehospital.consultations.models import Attachment, Consultation, Message
from ehospital.directory.models import Centre, Clinic, Doctor, Organisation, Pharmacist, RosterSlot
from ehospital.kit.models import Base
from ehospital.patients.models import Patient
from ehospital.pharmacy.models import DispensedLot, Order, OrderEvent, OrderLine, PaymentNotice, StockLot
from ehospital.prescriptions.models import DoctorKey, Drug, Finding, Prescription, PrescriptionItem, RxEvent
from ehospital.vetting.models import CdsCard, CdsFeedback

__all__ = [
    "AccessToken",
    "Account",
    "Attachment",
    "AuditEvent",
    "Base",
    "CdsCard",
    "CdsFeedback",
    "Centre",
    "Clinic",
    "Consultation",
    "DispensedLot",
    "Doctor",
    "DoctorKey",
    "Drug",
    "Finding",
    "LoginAttempt",
    "Message",
    "Order",
    "OrderEvent",
    "OrderLine",
    "Organisation",
    "Patient",
    "PaymentNotice",
    "Pharmacist",
    "Prescription",
    "PrescriptionItem",
    "RosterSlot",
    "RxEvent",
    "StockLot",
]
