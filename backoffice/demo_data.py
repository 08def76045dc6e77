"""Demo data: one order per branch of the handbook, with fixed, memorable ids, codes and PINs.

Dates are relative to the moment of seeding, so every case means what its name says on the day
it was seeded (``python -m backoffice seed --reset`` refreshes them). ``DEMO.md`` lists them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import List, Optional, Tuple

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from backoffice import rules
from backoffice.db import SessionFactory, create_tables, drop_tables, read_transaction, write_transaction
from backoffice.models import MULTI_BRAND, AuditLog, Brand, Certificate, Order, Refund, ResendLog
from backoffice.security import hash_pin
from backoffice.timeutil import moscow_day_bounds

VALIDITY = timedelta(days=365)  # "usually 12 months from the purchase"


@dataclass(frozen=True)
class DemoCertificate:
    code: str
    pin: str
    brand: str
    nominal: int
    balance: Optional[int] = None  # None = untouched (= nominal)
    status: str = "active"
    channel: str = "email"
    address: Optional[str] = None  # None = the buyer's e-mail / phone for the channel


@dataclass(frozen=True)
class DemoOrder:
    order_id: str
    case: str
    expected: str
    email: str
    phone: str
    days_ago: int
    payment_method: str
    certificates: Tuple[DemoCertificate, ...]
    is_b2b: bool = False
    company_inn: Optional[str] = None
    expires_days_ago: Optional[int] = None  # set for the expired case
    resends_today: int = 0
    refunded_days_ago: Optional[int] = None


def _brands() -> List[Brand]:
    return [
        Brand(name="Ozon", online=True, offline=False, single_purchase=False,
              note="Только онлайн: код вводится при оформлении заказа на ozon.ru."),
        Brand(name="М.Видео", online=True, offline=True, single_purchase=False),
        Brand(name="Золотое яблоко", online=True, offline=True, single_purchase=False),
        Brand(name="Лента", online=False, offline=True, single_purchase=True,
              note="Только в гипермаркетах, одной покупкой: остаток сгорает."),
        Brand(name="Спортмастер", online=True, offline=True, single_purchase=False),
        Brand(name="Детский мир", in_catalogue=False, online=True, offline=True, single_purchase=False,
              note="Временно вне каталога «Дарим Мульти»: обмен на этот бренд недоступен."),
    ]


def _b2b_certificates() -> Tuple[DemoCertificate, ...]:
    return tuple(
        DemoCertificate(
            code=f"DRM-CORP-0001-00{number:02d}", pin="6666", brand="Ozon", nominal=5000,
            address=f"employee{number:02d}@romashka.ru",
        )
        for number in range(1, 11)
    )


DEMO_ORDERS: Tuple[DemoOrder, ...] = (
    DemoOrder(
        "40817263", "eligible refund, e-mail delivery",
        "Full refund of 3 000 ₽ to the card after verification and consent (≤ 14 days, not activated).",
        "ivan@mail.ru", "+79161234567", 3, "card",
        (DemoCertificate("DRM-A1B2-C3D4-7Q2K", "1234", "Ozon", 3000),),
    ),
    DemoOrder(
        "40817270", "more than 14 days, SMS delivery",
        "No automatic refund (20 days): written request decided by staff → ticket, escalate.",
        "maria@yandex.ru", "+79031112233", 20, "sbp",
        (DemoCertificate("DRM-L4TE-2020-DAYS", "2020", "Золотое яблоко", 5000, channel="sms"),),
    ),
    DemoOrder(
        "40817281", "activated (exchanged) «Дарим Мульти»",
        "Refund refused: the certificate was activated (exchanged for brand certificates).",
        "oleg@gmail.com", "+79265550011", 5, "card",
        (DemoCertificate("DRM-ACTV-3333-MULT", "3333", MULTI_BRAND, 10000, status="activated"),),
    ),
    DemoOrder(
        "40817292", "partially used",
        "Refund refused: partially used (balance 1 800 of 5 000 ₽ remains to spend).",
        "anna@mail.ru", "+79857778899", 6, "card",
        (DemoCertificate("DRM-PART-4444-GOLD", "4444", "Золотое яблоко", 5000, balance=1800,
                         status="partially_used"),),
    ),
    DemoOrder(
        "40817303", "expired",
        "Refund refused and no extension (B2C): the certificate expired 35 days ago.",
        "sergey@yandex.ru", "+79161110055", 400, "card",
        (DemoCertificate("DRM-EXPD-5555-SPRT", "5555", "Спортмастер", 2000, status="expired"),),
        expires_days_ago=35,
    ),
    DemoOrder(
        "40817314", "corporate (B2B) order, INN 7712345671, 10 certificates",
        "Refund / extension / documents only through the personal manager → ticket for the manager.",
        "hr@romashka.ru", "+74951234567", 7, "invoice", _b2b_certificates(),
        is_b2b=True, company_inn="7712345671",
    ),
    DemoOrder(
        "40817325", "resend limit already reached today",
        "4th resend today refused (3 per order per Moscow day); possible again tomorrow.",
        "pavel@mail.ru", "+79998887766", 2, "card",
        (DemoCertificate("DRM-RSND-7777-LMT3", "7777", "Лента", 1000),),
        resends_today=3,
    ),
    DemoOrder(
        "40817336", "«Дарим Мульти», wanted brand «Детский мир» is off the catalogue",
        "Exchange for «Детский мир» unavailable for now: offer another brand (GET /brands) or escalate.",
        "elena@yandex.ru", "+79175554433", 12, "card",
        (DemoCertificate("DRM-MULT-8888-DMIR", "8888", MULTI_BRAND, 3000),),
    ),
    DemoOrder(
        "40817347", "fully used",
        "Refund refused: the certificate is used (balance 0).",
        "dmitry@gmail.com", "+79031234500", 10, "card",
        (DemoCertificate("DRM-USED-9999-ZERO", "9999", "Спортмастер", 1500, balance=0, status="used"),),
    ),
    DemoOrder(
        "40817358", "SMS delivery, brand accepted offline only (one purchase)",
        "Resend by SMS to +7***0101; Лента accepts it only in stores, in one purchase.",
        "olga@mail.ru", "+79261010101", 1, "sbp",
        (DemoCertificate("DRM-SMS1-1010-LENT", "1010", "Лента", 2000, channel="sms"),),
    ),
    DemoOrder(
        "40817369", "already refunded",
        "A repeated refund request returns the same refund (no second one); resends refused.",
        "kirill@mail.ru", "+79160000369", 4, "card",
        (DemoCertificate("DRM-RFND-0000-DONE", "0000", "Ozon", 1000, balance=0, status="refunded"),),
        refunded_days_ago=1,
    ),
)


def _order_rows(demo: DemoOrder, now: datetime) -> List[object]:
    created = now - timedelta(days=demo.days_ago)
    expires = (
        now - timedelta(days=demo.expires_days_ago) if demo.expires_days_ago is not None else created + VALIDITY
    )
    amount = sum(Decimal(c.nominal) for c in demo.certificates)
    rows: List[object] = [
        Order(
            id=demo.order_id, buyer_email=demo.email, buyer_phone=demo.phone, is_b2b=demo.is_b2b,
            company_inn=demo.company_inn, payment_method=demo.payment_method, amount=amount,
            created_at=created,
        )
    ]
    for cert in demo.certificates:
        rows.append(
            Certificate(
                code=cert.code, pin_hash=hash_pin(cert.pin), order_id=demo.order_id, brand=cert.brand,
                nominal=Decimal(cert.nominal),
                balance=Decimal(cert.nominal if cert.balance is None else cert.balance),
                status=cert.status, expires_at=expires, delivery_channel=cert.channel,
                delivery_address=cert.address or (demo.email if cert.channel == "email" else demo.phone),
            )
        )
    day_start, _ = moscow_day_bounds(now)
    for number in range(demo.resends_today):
        rows.append(
            ResendLog(
                order_id=demo.order_id, channel="email", address=demo.email, to_new_address=False,
                idempotency_key=f"demo-resend-{demo.order_id}-{number + 1}",
                created_at=max(day_start, now - timedelta(minutes=30 * (demo.resends_today - number))),
            )
        )
    if demo.refunded_days_ago is not None:
        refunded_at = now - timedelta(days=demo.refunded_days_ago)
        rows.append(
            Refund(
                order_id=demo.order_id, amount=amount, status="pending",
                idempotency_key=f"demo-refund-{demo.order_id}", payment_method=demo.payment_method,
                due_by=rules.refund_due_by(refunded_at), created_at=refunded_at,
            )
        )
    return rows


def has_data(session_factory: SessionFactory) -> bool:
    with read_transaction(session_factory) as session:
        return session.execute(select(func.count(Order.id))).scalar_one() > 0


def seed(engine: Engine, session_factory: SessionFactory, now: datetime, *, reset: bool = False) -> bool:
    """Fill the database with the demo cases. Returns False (and changes nothing) if it already
    has orders and ``reset`` is not set; with ``reset`` all back-office tables are dropped first."""
    if reset:
        drop_tables(engine)
    create_tables(engine)
    if has_data(session_factory):
        return False
    with write_transaction(session_factory) as session:
        session.add_all(_brands())
        for demo in DEMO_ORDERS:
            session.add_all(_order_rows(demo, now))
        session.add(
            AuditLog(
                action="demo.seed", entity="database", entity_id="demo", actor="seed",
                payload={"orders": [demo.order_id for demo in DEMO_ORDERS], "reset": reset},
                created_at=now,
            )
        )
    return True
