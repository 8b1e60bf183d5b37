"""Every table, imported in one place so metadata is complete (Alembic, tests)."""

from ehospital.audit.models import AuditEvent
from ehospital.auth.models import AccessToken, Account, LoginAttempt
from ehospital.consultations.models import Attachment, Call, Consultation, Message, ReadMark
from ehospital.directory.models import Centre, Clinic, Doctor, Organisation, Pharmacist, RosterSlot
from ehospital.glucose.models import Alert, CarePlan, Device, GlucoseReport, Reading, ReminderSent
from ehospital.kit.models import Base
from ehospital.notifications.models import Notification
from ehospital.patients.models import Patient
from ehospital.pharmacy.models import DispensedLot, Order, OrderEvent, OrderLine, PaymentNotice, StockLot
from ehospital.prescriptions.models import DoctorKey, Drug, Finding, Prescription, PrescriptionItem, RxEvent
from ehospital.skin.tables import SkinAnalysis, SkinFollowUp, SkinPhoto, SkinReview
from ehospital.vetting.models import CdsCard, CdsFeedback

__all__ = [
    "AccessToken",
    "Account",
    "Alert",
    "Attachment",
    "AuditEvent",
    "Base",
    "Call",
    "CarePlan",
    "CdsCard",
    "CdsFeedback",
    "Centre",
    "Clinic",
    "Consultation",
    "Device",
    "DispensedLot",
    "Doctor",
    "DoctorKey",
    "Drug",
    "Finding",
    "GlucoseReport",
    "LoginAttempt",
    "Message",
    "Notification",
    "Order",
    "OrderEvent",
    "OrderLine",
    "Organisation",
    "Patient",
    "PaymentNotice",
    "Pharmacist",
    "Prescription",
    "PrescriptionItem",
    "ReadMark",
    "Reading",
    "ReminderSent",
    "RosterSlot",
    "RxEvent",
    "SkinAnalysis",
    "SkinFollowUp",
    "SkinPhoto",
    "SkinReview",
    "StockLot",
]
