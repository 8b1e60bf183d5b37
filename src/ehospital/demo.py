"""The demo hospital group: centres, clinics, doctors, pharmacies and sign-in accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.models import Account, Role
from ehospital.auth.passwords import hash_password
from ehospital.directory.models import (
    Centre,
    Clinic,
    Doctor,
    DoctorTitle,
    Organisation,
    OrganisationKind,
    Pharmacist,
    RosterSlot,
)
from ehospital.directory.repository import DirectoryRepository
from ehospital.kit import resident_id
from ehospital.kit.models import utcnow
from ehospital.patients.models import Patient, Relationship
from ehospital.pharmacy.models import StockLot
from ehospital.prescriptions.formulary import sync_formulary
from ehospital.prescriptions.models import Drug


@dataclass(frozen=True)
class DemoAccount:
    role: str
    username: str
    password: str
    note: str


DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("patient", "patient", "patient-demo-1", "Li Na 李娜, with her husband, son and father"),
    DemoAccount("doctor", "dr.zhang", "doctor-demo-1", "Diabetes centre, chief physician"),
    DemoAccount("doctor", "dr.lin", "doctor-demo-1", "Skin hospital, acne clinic"),
    DemoAccount("doctor", "dr.new", "doctor-demo-1", "registered, awaiting verification"),
    DemoAccount("pharmacist", "pharmacist", "pharmacist-demo-1", "Kangjian pharmacy"),
    DemoAccount("pharmacy_staff", "pharmacy.staff", "staff-demo-1", "Kangjian pharmacy"),
    DemoAccount("centre_manager", "manager", "manager-demo-1", "Diabetes centre"),
    DemoAccount("admin", "admin", "admin-demo-1", "operator administrator"),
)

# (code, English, Chinese, description en, description zh, clinics)
CENTRES: tuple[tuple[str, str, str, str, str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "diabetes",
        "Diabetes Centre",
        "糖尿病中心",
        "Follow-up of type 1, type 2 and gestational diabetes.",
        "1型、2型及妊娠糖尿病复诊。",
        (
            ("t2d", "Type 2 diabetes clinic", "2型糖尿病门诊"),
            ("t1d", "Type 1 diabetes clinic", "1型糖尿病门诊"),
            ("gdm", "Gestational diabetes clinic", "妊娠糖尿病门诊"),
        ),
    ),
    (
        "senior",
        "Senior Care Centre",
        "老年医学中心",
        "Chronic conditions of older adults and polypharmacy.",
        "老年慢病与多重用药管理。",
        (
            ("memory", "Memory clinic", "记忆门诊"),
            ("falls", "Falls and frailty clinic", "跌倒与衰弱门诊"),
        ),
    ),
    (
        "rare",
        "Rare Disease Centre",
        "罕见病中心",
        "Follow-up of rare diseases, with a charity drug fund.",
        "罕见病复诊,设慈善用药援助基金。",
        (
            ("haemophilia", "Haemophilia clinic", "血友病门诊"),
            ("sma", "Neuromuscular clinic", "神经肌肉病门诊"),
        ),
    ),
    (
        "kidney",
        "Kidney Centre",
        "肾病中心",
        "Chronic kidney disease, dialysis and transplant follow-up.",
        "慢性肾病、透析及肾移植随访。",
        (
            ("ckd", "CKD clinic", "慢性肾病门诊"),
            ("transplant", "Transplant follow-up clinic", "肾移植随访门诊"),
        ),
    ),
    (
        "respiratory",
        "Respiratory Centre",
        "呼吸中心",
        "Asthma, COPD and sleep apnoea follow-up.",
        "哮喘、慢阻肺及睡眠呼吸暂停复诊。",
        (("asthma", "Asthma clinic", "哮喘门诊"), ("copd", "COPD clinic", "慢阻肺门诊")),
    ),
    (
        "cardiology",
        "Cardiology Centre",
        "心血管中心",
        "Hypertension, heart failure and anticoagulation follow-up.",
        "高血压、心衰及抗凝复诊。",
        (
            ("hypertension", "Hypertension clinic", "高血压门诊"),
            ("hf", "Heart failure clinic", "心衰门诊"),
        ),
    ),
    (
        "skin",
        "Skin Hospital",
        "皮肤病医院",
        "Online skin hospital with seven specialised clinics.",
        "线上皮肤病医院,设七个专病门诊。",
        (
            ("paediatric", "Paediatric dermatology", "儿童皮肤科"),
            ("geriatric", "Geriatric dermatology", "老年皮肤科"),
            ("tcm", "TCM dermatology", "中医皮肤科"),
            ("acne", "Acne clinic", "痤疮门诊"),
            ("allergy", "Allergy clinic", "过敏性皮肤病门诊"),
            ("hairloss", "Hair loss clinic", "脱发门诊"),
            ("difficult", "Difficult cases clinic", "疑难皮肤病门诊"),
        ),
    ),
)

# (username, name, centre code, clinic code or "", title, price in yuan)
DOCTORS: tuple[tuple[str, str, str, str, DoctorTitle, int], ...] = (
    ("dr.zhang", "张伟 Zhang Wei", "diabetes", "t2d", DoctorTitle.CHIEF, 80),
    ("dr.chen", "陈静 Chen Jing", "diabetes", "t1d", DoctorTitle.ASSOCIATE_CHIEF, 60),
    ("dr.huang", "黄磊 Huang Lei", "diabetes", "gdm", DoctorTitle.ATTENDING, 40),
    ("dr.zhou", "周敏 Zhou Min", "senior", "memory", DoctorTitle.CHIEF, 80),
    ("dr.wu", "吴刚 Wu Gang", "senior", "falls", DoctorTitle.ATTENDING, 40),
    ("dr.qian", "钱芳 Qian Fang", "senior", "", DoctorTitle.ASSOCIATE_CHIEF, 60),
    ("dr.xu", "徐丽 Xu Li", "rare", "haemophilia", DoctorTitle.CHIEF, 100),
    ("dr.sun", "孙涛 Sun Tao", "rare", "sma", DoctorTitle.ASSOCIATE_CHIEF, 80),
    ("dr.feng", "冯雪 Feng Xue", "rare", "", DoctorTitle.ATTENDING, 60),
    ("dr.ma", "马骏 Ma Jun", "kidney", "ckd", DoctorTitle.CHIEF, 80),
    ("dr.zhu", "朱红 Zhu Hong", "kidney", "transplant", DoctorTitle.ATTENDING, 50),
    ("dr.cao", "曹宁 Cao Ning", "kidney", "ckd", DoctorTitle.ATTENDING, 40),
    ("dr.hu", "胡斌 Hu Bin", "respiratory", "asthma", DoctorTitle.ASSOCIATE_CHIEF, 60),
    ("dr.guo", "郭燕 Guo Yan", "respiratory", "copd", DoctorTitle.ATTENDING, 40),
    ("dr.deng", "邓辉 Deng Hui", "respiratory", "", DoctorTitle.CHIEF, 80),
    ("dr.he", "何强 He Qiang", "cardiology", "hypertension", DoctorTitle.CHIEF, 80),
    ("dr.gao", "高霞 Gao Xia", "cardiology", "hf", DoctorTitle.ATTENDING, 50),
    ("dr.peng", "彭军 Peng Jun", "cardiology", "hypertension", DoctorTitle.ASSOCIATE_CHIEF, 60),
    ("dr.lin", "林芳 Lin Fang", "skin", "acne", DoctorTitle.ASSOCIATE_CHIEF, 60),
    ("dr.luo", "罗洋 Luo Yang", "skin", "paediatric", DoctorTitle.ATTENDING, 40),
    ("dr.liang", "梁慧 Liang Hui", "skin", "geriatric", DoctorTitle.ATTENDING, 40),
    ("dr.song", "宋文 Song Wen", "skin", "tcm", DoctorTitle.CHIEF, 80),
    ("dr.zheng", "郑洁 Zheng Jie", "skin", "allergy", DoctorTitle.ASSOCIATE_CHIEF, 60),
    ("dr.xie", "谢鹏 Xie Peng", "skin", "hairloss", DoctorTitle.ATTENDING, 50),
    ("dr.han", "韩雪 Han Xue", "skin", "difficult", DoctorTitle.CHIEF, 120),
)

_DAY_SHIFTS = ((time(8, 30), time(12, 0)), (time(14, 0), time(17, 30)))


def _password(username: str) -> str:
    return next(a.password for a in DEMO_ACCOUNTS if a.username == username)


async def seed_demo(session: AsyncSession) -> bool:
    """Create the demo data unless it is already there; True when it was created."""
    await sync_formulary(session)  # new drugs of an upgrade arrive in existing demos too
    directory = DirectoryRepository(session)
    if await directory.centre_by_code("diabetes") is not None:
        return False
    now = utcnow()
    group = Organisation(
        kind=OrganisationKind.HOSPITAL, name_en="Huaxia Health Group", name_zh="华夏健康集团"
    )
    session.add(group)
    await session.flush()
    hospital = Organisation(
        kind=OrganisationKind.HOSPITAL,
        name_en="Huaxia Internet Hospital",
        name_zh="华夏互联网医院",
        licence_number="PDY-DEMO-0001",
        address="Beijing",
        parent_id=group.id,
    )
    pharmacies = [
        Organisation(
            kind=OrganisationKind.PHARMACY,
            name_en="Kangjian Pharmacy",
            name_zh="康健大药房",
            licence_number="YP-DEMO-0001",
            address="Beijing, Chaoyang",
            parent_id=group.id,
        ),
        Organisation(
            kind=OrganisationKind.PHARMACY,
            name_en="Renhe Pharmacy",
            name_zh="仁和药房",
            licence_number="YP-DEMO-0002",
            address="Beijing, Haidian",
            parent_id=group.id,
        ),
    ]
    session.add_all([hospital, *pharmacies])
    await session.flush()

    centres: dict[str, Centre] = {}
    clinics: dict[tuple[str, str], Clinic] = {}
    for code, en, zh, desc_en, desc_zh, clinic_rows in CENTRES:
        centre = Centre(
            organisation_id=hospital.id,
            code=code,
            name_en=en,
            name_zh=zh,
            description_en=desc_en,
            description_zh=desc_zh,
        )
        session.add(centre)
        await session.flush()
        centres[code] = centre
        for c_code, c_en, c_zh in clinic_rows:
            clinic = Clinic(centre_id=centre.id, code=c_code, name_en=c_en, name_zh=c_zh)
            session.add(clinic)
            clinics[(code, c_code)] = clinic
    await session.flush()

    doctor_hash = hash_password(_password("dr.zhang"))
    for i, (username, name, centre_code, clinic_code, title, price) in enumerate(DOCTORS):
        account = Account(
            username=username,
            password_hash=doctor_hash,
            role=Role.DOCTOR,
            display_name=name,
            locale="zh",
        )
        session.add(account)
        await session.flush()
        doctor = Doctor(
            account_id=account.id,
            name=name,
            licence_number=f"110{i + 1:012d}",
            title=title,
            institution="Huaxia Hospital of Beijing 北京华夏医院",
            centre_id=centres[centre_code].id,
            clinic_id=clinics[(centre_code, clinic_code)].id if clinic_code else None,
            price_cents=price * 100,
            verified_at=now,
            max_concurrent=20,
            bio_en=f"{title.replace('_', ' ').title()} with years of follow-up care.",
            bio_zh="长期从事慢病复诊与随访。",
        )
        session.add(doctor)
        await session.flush()
        for weekday in range(5):
            for starts, ends in _DAY_SHIFTS:
                session.add(RosterSlot(doctor_id=doctor.id, weekday=weekday, starts=starts, ends=ends))
        session.add(RosterSlot(doctor_id=doctor.id, weekday=5 + i % 2, starts=time(19, 0), ends=time(21, 0)))

    pending = Account(
        username="dr.new",
        password_hash=doctor_hash,
        role=Role.DOCTOR,
        display_name="赵新 Zhao Xin",
        locale="zh",
    )
    session.add(pending)
    await session.flush()
    session.add(
        Doctor(
            account_id=pending.id,
            name="赵新 Zhao Xin",
            licence_number="110999999999999",
            title=DoctorTitle.RESIDENT,
            institution="Huaxia County Hospital 华夏县医院",
            centre_id=centres["diabetes"].id,
            price_cents=3000,
        )
    )

    for n, pharmacy in enumerate(pharmacies):
        username = "pharmacist" if n == 0 else f"pharmacist{n + 1}"
        account = Account(
            username=username,
            password_hash=hash_password(_password("pharmacist")),
            role=Role.PHARMACIST,
            display_name=("王药师 Wang" if n == 0 else "钱药师 Qian"),
            organisation_id=pharmacy.id,
        )
        session.add(account)
        await session.flush()
        session.add(
            Pharmacist(
                account_id=account.id,
                name=account.display_name,
                licence_number=f"YS-DEMO-{n + 1:04d}",
                organisation_id=pharmacy.id,
            )
        )
    session.add_all(
        [
            Account(
                username="pharmacy.staff",
                password_hash=hash_password(_password("pharmacy.staff")),
                role=Role.PHARMACY_STAFF,
                display_name="药房员工 Staff",
                organisation_id=pharmacies[0].id,
            ),
            Account(
                username="manager",
                password_hash=hash_password(_password("manager")),
                role=Role.CENTRE_MANAGER,
                display_name="中心主任 Manager",
                centre_id=centres["diabetes"].id,
            ),
            Account(
                username="admin",
                password_hash=hash_password(_password("admin")),
                role=Role.ADMIN,
                display_name="管理员 Admin",
                locale="en",
            ),
        ]
    )
    await _stock_pharmacies(session, pharmacies)
    holder = Account(
        username="patient",
        password_hash=hash_password(_password("patient")),
        role=Role.PATIENT,
        display_name="李娜 Li Na",
        phone="13800000000",
        locale="zh",
    )
    session.add(holder)
    await session.flush()
    family = (
        ("李娜 Li Na", Relationship.SELF, date(1985, 3, 14), "female", 1),
        ("王强 Wang Qiang", Relationship.SPOUSE, date(1983, 9, 2), "male", 2),
        ("王小明 Wang Xiaoming", Relationship.CHILD, date(2021, 6, 18), "male", 3),
        ("李建国 Li Jianguo", Relationship.PARENT, date(1952, 11, 30), "male", 4),
    )
    for name, rel, born, sex, seq in family:
        session.add(
            Patient(
                account_id=holder.id,
                name=name,
                id_number=resident_id.make("110105", born, seq, "male" if sex == "male" else "female"),
                sex=sex,
                birth_date=born,
                relationship=rel,
            )
        )
    await session.flush()
    return True


async def _stock_pharmacies(session: AsyncSession, pharmacies: list[Organisation]) -> None:
    """Two lots of every drug that may be prescribed online, in both demo pharmacies."""
    today = date.today()
    drugs = (await session.scalars(select(Drug).where(Drug.control == "none"))).all()
    for pharmacy in pharmacies:
        for drug in drugs:
            session.add_all(
                [
                    StockLot(
                        pharmacy_id=pharmacy.id,
                        drug_id=drug.id,
                        lot_number=f"D{pharmacy.id}-{drug.id}-A",
                        expires_on=today + timedelta(days=120),
                        quantity=200,
                    ),
                    StockLot(
                        pharmacy_id=pharmacy.id,
                        drug_id=drug.id,
                        lot_number=f"D{pharmacy.id}-{drug.id}-B",
                        expires_on=today + timedelta(days=540),
                        quantity=500,
                    ),
                ]
            )
    await session.flush()
