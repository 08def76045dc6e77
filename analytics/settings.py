"""Settings of analytics, read from the environment (one frozen object).

========================================= ===========================================================
``EVENTS_DATABASE_URL``                   the event broker's database (default: endpoints.yml's ``events.db``)
``HANDOFF_DATABASE_URL``                  the hand-over core (hand-overs, operators' time, copilot drafts)
``ANALYTICS_SESSION_TIMEOUT_MINUTES``     a conversation with no message for this long is finished (30)
``ANALYTICS_OPERATOR_COST_PER_MINUTE``    what a minute of an operator costs, ₽ (10)
``ANALYTICS_BOT_CPU_SECONDS_PER_MESSAGE`` the stack's CPU per customer message (0.035, docs/benchmarks.md «Load»)
``ANALYTICS_CPU_COST_PER_HOUR``           what a CPU core-hour costs, ₽ (2)
``ANALYTICS_AUTONOMY_MIN_RATED``          rated drafts a topic needs before any advice (20)
``ANALYTICS_AUTONOMY_MIN_LIKE_RATE``      the lower 95 % bound of its like rate to advise autonomous (0.8)
========================================= ===========================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

from engine.env import env_float, env_int, env_raw
from engine.settings import PROJECT_ROOT


def _default_events_url() -> str:
    """endpoints.yml's event broker file (relative to the project root, as the stack runs it)."""
    from ruamel.yaml import YAML

    try:
        endpoints = YAML(typ="safe").load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8")) or {}
    except OSError:
        endpoints = {}
    broker = endpoints.get("event_broker") or {}
    if broker.get("url"):
        return str(broker["url"])
    return f"sqlite:///{PROJECT_ROOT / str(broker.get('db') or 'events.db')}"


@dataclass(frozen=True)
class AnalyticsSettings:
    events_database_url: str
    handoff_database_url: str
    session_timeout_minutes: float = 30.0
    operator_cost_per_minute: float = 10.0
    bot_cpu_seconds_per_message: float = 0.035
    cpu_cost_per_hour: float = 2.0
    autonomy_min_rated: int = 20
    autonomy_min_like_rate: float = 0.8

    def __post_init__(self) -> None:
        if self.session_timeout_minutes <= 0:
            raise ValueError("ANALYTICS_SESSION_TIMEOUT_MINUTES must be > 0")
        for name in ("operator_cost_per_minute", "bot_cpu_seconds_per_message", "cpu_cost_per_hour"):
            if getattr(self, name) < 0:
                raise ValueError(f"ANALYTICS_{name.upper()} must be >= 0")
        if self.autonomy_min_rated < 1 or not 0 < self.autonomy_min_like_rate <= 1:
            raise ValueError("ANALYTICS_AUTONOMY_MIN_RATED must be >= 1 and ANALYTICS_AUTONOMY_MIN_LIKE_RATE in (0, 1]")

    @property
    def session_timeout_seconds(self) -> float:
        return self.session_timeout_minutes * 60

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "AnalyticsSettings":
        env = os.environ if environ is None else environ
        from handoff.settings import DEFAULT_DATABASE_URL

        return cls(
            events_database_url=env_raw(env, "EVENTS_DATABASE_URL") or _default_events_url(),
            handoff_database_url=env_raw(env, "HANDOFF_DATABASE_URL") or DEFAULT_DATABASE_URL,
            session_timeout_minutes=env_float(env, "ANALYTICS_SESSION_TIMEOUT_MINUTES", cls.session_timeout_minutes),
            operator_cost_per_minute=env_float(env, "ANALYTICS_OPERATOR_COST_PER_MINUTE", cls.operator_cost_per_minute),
            bot_cpu_seconds_per_message=env_float(env, "ANALYTICS_BOT_CPU_SECONDS_PER_MESSAGE",
                                                  cls.bot_cpu_seconds_per_message),
            cpu_cost_per_hour=env_float(env, "ANALYTICS_CPU_COST_PER_HOUR", cls.cpu_cost_per_hour),
            autonomy_min_rated=env_int(env, "ANALYTICS_AUTONOMY_MIN_RATED", cls.autonomy_min_rated),
            autonomy_min_like_rate=env_float(env, "ANALYTICS_AUTONOMY_MIN_LIKE_RATE", cls.autonomy_min_like_rate),
        )
