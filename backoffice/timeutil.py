"""Time helpers: everything is stored in UTC; the handbook's days and hours are Moscow's."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Callable, Tuple


def _moscow() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Moscow")
    except Exception:  # no tz database on the host: Moscow has been UTC+3 all year since 2014
        return timezone(timedelta(hours=3), "MSK")


MOSCOW: tzinfo = _moscow()

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (UTC)")
    return moment


def moscow_date(moment: datetime) -> date:
    return require_aware(moment).astimezone(MOSCOW).date()


def moscow_midnight(day: date) -> datetime:
    """00:00 Moscow time of ``day``, as an aware UTC datetime."""
    return datetime.combine(day, time(0, 0), tzinfo=MOSCOW).astimezone(timezone.utc)


def moscow_day_bounds(moment: datetime) -> Tuple[datetime, datetime]:
    """[start, end) in UTC of the Moscow calendar day that contains ``moment``."""
    day = moscow_date(moment)
    return moscow_midnight(day), moscow_midnight(day + timedelta(days=1))


def iso(moment: datetime) -> str:
    return require_aware(moment).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
