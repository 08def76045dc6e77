"""Portable column types: UTC-aware timestamps and money (roubles with kopecks)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Optional

from sqlalchemy import DateTime, Numeric
from sqlalchemy.types import TypeDecorator

KOPECK = Decimal("0.01")


class UTCDateTime(TypeDecorator):
    """Stores naive UTC (SQLite has no time zones), always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def to_money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(KOPECK, rounding=ROUND_HALF_UP)


class Money(TypeDecorator):
    """NUMERIC(12, 2) roubles, exposed as ``Decimal`` with exactly two places on every backend."""

    impl = Numeric(12, 2, asdecimal=False)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        money = to_money(value)
        return money if dialect.supports_native_decimal else float(money)

    def process_result_value(self, value: Any, dialect: Any) -> Optional[Decimal]:
        return None if value is None else to_money(value)
