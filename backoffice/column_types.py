"""Portable column types: money (roubles with kopecks); UTC-aware timestamps come from ``sqlstore``."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Optional

from sqlalchemy import Numeric
from sqlalchemy.types import TypeDecorator

from sqlstore import UTCDateTime

__all__ = ["KOPECK", "Money", "UTCDateTime", "to_money"]

KOPECK = Decimal("0.01")


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
