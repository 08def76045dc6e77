"""One call that makes the report: the event stream and the hand-over core read, each conversation
classified, the metrics built — used by the CLI, the console's dashboard and its REST endpoint."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from analytics.metrics import Costs, Report, build_report
from analytics.outcomes import Outcome, classify
from analytics.settings import AnalyticsSettings
from analytics.stream import conversations, read_events, read_handoff

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: Optional[str], now: datetime) -> Optional[datetime]:
    """``7d``, ``12h``, ``30m``, ``2w`` (that long before ``now``), an ISO date or date-time (UTC
    when it has no zone), or None. ValueError names what is accepted."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip().lower()
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a period: {value!r} (use e.g. 7d, 12h, 2026-12-01 or 2026-12-01T09:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def outcomes(settings: AnalyticsSettings, now: datetime) -> List[Outcome]:
    handovers, _ = read_handoff(settings.handoff_database_url, now)
    found = []
    for conversation in conversations(read_events(settings.events_database_url), handovers,
                                      settings.session_timeout_seconds):
        outcome = classify(conversation, now, settings.session_timeout_seconds)
        if outcome is not None:
            found.append(outcome)
    return found


def make_report(
    settings: Optional[AnalyticsSettings] = None,
    *,
    since: Optional[str] = None,
    until: Optional[str] = None,
    now: Optional[datetime] = None,
    with_conversations: bool = False,
) -> Report:
    settings = settings or AnalyticsSettings.from_env()
    now = now or datetime.now(timezone.utc)
    start, end = parse_moment(since, now), parse_moment(until, now)
    _, spans = read_handoff(settings.handoff_database_url, now)
    minutes: Dict[str, float] = {}
    for span in spans:
        minutes[span.conversation_id] = minutes.get(span.conversation_id, 0.0) + span.minutes
    return build_report(
        outcomes(settings, now),
        since=start, until=end, now=now,
        session_timeout_minutes=settings.session_timeout_minutes,
        operator_minutes=minutes,
        costs=Costs(settings.operator_cost_per_minute, settings.bot_cpu_seconds_per_message, settings.cpu_cost_per_hour),
        copilot=_copilot_stats(settings, start, end),
        modes=_modes(),
        min_rated=settings.autonomy_min_rated,
        min_like_rate=settings.autonomy_min_like_rate,
        with_conversations=with_conversations,
    )


def _copilot_stats(settings: AnalyticsSettings, since: Optional[datetime], until: Optional[datetime]) -> Dict[str, Any]:
    from handoff.copilot import copilot_stats
    from handoff.machine import HandoffService
    from handoff.settings import HandoffSettings

    service = HandoffService.from_settings(HandoffSettings(database_url=settings.handoff_database_url))
    try:
        return copilot_stats(service, since=since, until=until)
    finally:
        service.session_factory.kw["bind"].dispose()


def _modes() -> Any:
    from handoff.copilot import CopilotModes
    from handoff.errors import InvalidModesFile
    from handoff.settings import HandoffSettings

    try:
        return CopilotModes.load(HandoffSettings.from_env().modes_file)
    except InvalidModesFile:
        return None
