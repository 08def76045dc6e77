"""The numbers, per period and per topic, from the conversations' outcomes (``analytics.outcomes``),
the copilot drafts and the operators' time — and the autonomy advice per topic.

Definitions (also in the README):

* **resolution rate** = (confirmed + assumed resolutions) ÷ finished conversations that needed help
  (spam, wrong address and conversations still in progress are not counted); the **confirmed rate**
  uses the confirmed ones only — an assumed resolution is never counted as confirmed;
* **hand-over rate** = handed over ÷ the same denominator, also per escalation rule;
* **turns to resolution** = the customer's messages up to the answer that resolved it;
* **time to first reply** = from the customer's first message to the bot's first message;
* **fallback rate** = customer messages the NLU did not understand ÷ all customer messages;
* **clarification rate** = clarifying questions ÷ knowledge-base attempts;
* **CSAT** = the mean 1–5 rating, with how many ratings it rests on;
* **cost** = the bot's CPU (messages × CPU seconds per message × the price of a core-hour) plus
  the operators' minutes (from taking a conversation to giving it back or closing it) × their price.

**Autonomy advice** for a topic: with at least ``min_rated`` rated copilot drafts, ``autonomous``
when the lower bound of the 95 % Wilson interval of the like rate is at least ``min_like_rate``,
else ``copilot``; with fewer ratings, ``more data``.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from analytics.outcomes import (
    ABANDONED, HANDED_OVER, IN_PROGRESS, RESOLVED_ASSUMED, RESOLVED_CONFIRMED, SPAM, UNRESOLVED, WRONG_ADDRESS,
    Outcome,
)

ALL_TOPICS = "all"
AUTONOMOUS, COPILOT, MORE_DATA = "autonomous", "copilot", "more data"


def wilson_lower_bound(successes: int, total: int, z: float = 1.96) -> Optional[float]:
    """The lower end of the Wilson score interval (95 % by default) of a proportion."""
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return round((centre - margin) / denominator, 4)


@dataclass(frozen=True)
class Advice:
    recommendation: str  # autonomous | copilot | more data
    rated: int
    likes: int
    like_rate_lower_bound: Optional[float]
    reason: str


def advise(rated: int, likes: int, min_rated: int, min_like_rate: float) -> Advice:
    bound = wilson_lower_bound(likes, rated)
    if rated < min_rated:
        return Advice(MORE_DATA, rated, likes, bound, f"{rated} rated drafts; at least {min_rated} are needed")
    if bound is not None and bound >= min_like_rate:
        return Advice(AUTONOMOUS, rated, likes, bound,
                      f"{likes}/{rated} liked: the like rate is at least {bound:.0%} (95 %), ≥ {min_like_rate:.0%}")
    return Advice(COPILOT, rated, likes, bound,
                  f"{likes}/{rated} liked: the like rate may be as low as {bound:.0%} (95 %), < {min_like_rate:.0%}")


def _ratio(part: float, whole: float) -> Optional[float]:
    return round(part / whole, 4) if whole else None


def _mean(values: Sequence[float]) -> Optional[float]:
    return round(sum(values) / len(values), 3) if values else None


def _median(values: Sequence[float]) -> Optional[float]:
    return round(statistics.median(values), 3) if values else None


def _p95(values: Sequence[float]) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3)


@dataclass(frozen=True)
class Costs:
    operator_cost_per_minute: float
    bot_cpu_seconds_per_message: float
    cpu_cost_per_hour: float

    def bot(self, messages: int) -> float:
        return messages * self.bot_cpu_seconds_per_message * self.cpu_cost_per_hour / 3600

    def operator(self, minutes: float) -> float:
        return minutes * self.operator_cost_per_minute


@dataclass
class TopicMetrics:
    topic: str
    conversations: int = 0
    finished: int = 0
    in_progress: int = 0
    needing_help: int = 0
    resolved_confirmed: int = 0
    resolved_assumed: int = 0
    handed_over: int = 0
    handed_over_by_rule: Dict[str, int] = field(default_factory=dict)
    unresolved: int = 0
    abandoned: int = 0
    abandoned_mid_flow: int = 0
    spam: int = 0
    wrong_address: int = 0
    resolution_rate: Optional[float] = None
    confirmed_resolution_rate: Optional[float] = None
    handover_rate: Optional[float] = None
    turns_to_resolution_mean: Optional[float] = None
    turns_to_resolution_median: Optional[float] = None
    first_reply_seconds_mean: Optional[float] = None
    first_reply_seconds_median: Optional[float] = None
    first_reply_seconds_p95: Optional[float] = None
    customer_messages: int = 0
    fallback_rate: Optional[float] = None
    kb_answered: int = 0
    kb_clarified: int = 0
    kb_not_answered: int = 0
    clarification_rate: Optional[float] = None
    csat_mean: Optional[float] = None
    csat_ratings: int = 0
    csat_distribution: Dict[str, int] = field(default_factory=dict)
    operator_minutes: float = 0.0
    cost_bot: float = 0.0
    cost_operators: float = 0.0
    cost_per_conversation: Optional[float] = None
    copilot: Dict[str, Any] = field(default_factory=dict)
    mode: Optional[str] = None
    advice: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def topic_metrics(topic: str, outcomes: Sequence[Outcome], operator_minutes: Mapping[str, float],
                  costs: Costs) -> TopicMetrics:
    m = TopicMetrics(topic)
    m.conversations = len(outcomes)
    rules: Dict[str, int] = defaultdict(int)
    turns: List[float] = []
    replies: List[float] = []
    ratings: List[int] = []
    for o in outcomes:
        m.finished += o.finished
        m.in_progress += o.outcome == IN_PROGRESS
        m.needing_help += o.needs_help
        m.resolved_confirmed += o.outcome == RESOLVED_CONFIRMED
        m.resolved_assumed += o.outcome == RESOLVED_ASSUMED
        m.unresolved += o.outcome == UNRESOLVED
        m.abandoned += o.outcome == ABANDONED
        m.abandoned_mid_flow += o.outcome == ABANDONED and o.mid_flow
        m.spam += o.outcome == SPAM
        m.wrong_address += o.outcome == WRONG_ADDRESS
        if o.outcome == HANDED_OVER:
            m.handed_over += 1
            rules[o.rule or "unknown"] += 1
        if o.turns_to_resolution is not None:
            turns.append(o.turns_to_resolution)
        if o.first_reply_seconds is not None:
            replies.append(o.first_reply_seconds)
        if o.rating is not None:
            ratings.append(o.rating)
        m.customer_messages += o.customer_messages
        m.kb_answered += o.kb_answered
        m.kb_clarified += o.kb_clarified
        m.kb_not_answered += o.kb_not_answered
        m.operator_minutes += operator_minutes.get(o.sender_id, 0.0) if o.outcome == HANDED_OVER else 0.0
    fallbacks = sum(o.fallbacks for o in outcomes)
    m.handed_over_by_rule = dict(sorted(rules.items()))
    m.resolution_rate = _ratio(m.resolved_confirmed + m.resolved_assumed, m.needing_help)
    m.confirmed_resolution_rate = _ratio(m.resolved_confirmed, m.needing_help)
    m.handover_rate = _ratio(m.handed_over, m.needing_help)
    m.turns_to_resolution_mean, m.turns_to_resolution_median = _mean(turns), _median(turns)
    m.first_reply_seconds_mean, m.first_reply_seconds_median, m.first_reply_seconds_p95 = (
        _mean(replies), _median(replies), _p95(replies))
    m.fallback_rate = _ratio(fallbacks, m.customer_messages)
    attempts = m.kb_answered + m.kb_clarified + m.kb_not_answered
    m.clarification_rate = _ratio(m.kb_clarified, attempts)
    m.csat_mean, m.csat_ratings = _mean(ratings), len(ratings)
    m.csat_distribution = {str(score): ratings.count(score) for score in range(1, 6)}
    m.operator_minutes = round(m.operator_minutes, 2)
    m.cost_bot = round(costs.bot(m.customer_messages), 4)
    m.cost_operators = round(costs.operator(m.operator_minutes), 2)
    m.cost_per_conversation = _ratio(m.cost_bot + m.cost_operators, m.conversations)
    return m


@dataclass
class Report:
    since: Optional[str]
    until: Optional[str]
    generated_at: str
    session_timeout_minutes: float
    overall: TopicMetrics
    topics: List[TopicMetrics]
    days: List[Dict[str, Any]]
    conversations: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "since": self.since, "until": self.until, "generated_at": self.generated_at,
            "session_timeout_minutes": self.session_timeout_minutes,
            "overall": self.overall.to_dict(), "topics": [t.to_dict() for t in self.topics], "days": self.days,
            "conversations": self.conversations,
        }


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


def build_report(
    outcomes: Iterable[Outcome],
    *,
    since: Optional[datetime],
    until: Optional[datetime],
    now: datetime,
    session_timeout_minutes: float,
    operator_minutes: Mapping[str, float],
    costs: Costs,
    copilot: Mapping[str, Any] = {},  # topic → handoff.copilot.TopicStats (drafts in the period)
    modes: Any = None,  # handoff.copilot.CopilotModes
    min_rated: int = 20,
    min_like_rate: float = 0.8,
    with_conversations: bool = False,
) -> Report:
    chosen = [o for o in outcomes if (since is None or o.started_at >= since) and (until is None or o.started_at < until)]
    by_topic: Dict[str, List[Outcome]] = defaultdict(list)
    by_day: Dict[date, List[Outcome]] = defaultdict(list)
    for outcome in chosen:
        by_topic[outcome.topic].append(outcome)
        by_day[outcome.started_at.date()].append(outcome)
    topics = []
    for topic in sorted(set(by_topic) | set(copilot)):
        metrics = topic_metrics(topic, by_topic.get(topic, []), operator_minutes, costs)
        stats = copilot.get(topic)
        if stats is not None:
            metrics.copilot = stats.to_dict() if hasattr(stats, "to_dict") else dict(stats)
            rated, likes = int(metrics.copilot.get("rated") or 0), int(metrics.copilot.get("likes") or 0)
        else:
            rated = likes = 0
        metrics.advice = asdict(advise(rated, likes, min_rated, min_like_rate))
        if modes is not None:
            metrics.mode = modes.mode_for(topic).value
        topics.append(metrics)
    topics.sort(key=lambda t: (-t.conversations, t.topic))
    days = []
    for day in sorted(by_day):
        m = topic_metrics(day.isoformat(), by_day[day], operator_minutes, costs)
        days.append({"date": day.isoformat(), "conversations": m.conversations, "resolved_confirmed": m.resolved_confirmed,
                     "resolved_assumed": m.resolved_assumed, "handed_over": m.handed_over, "abandoned": m.abandoned,
                     "resolution_rate": m.resolution_rate, "handover_rate": m.handover_rate})
    return Report(
        since=_iso(since), until=_iso(until), generated_at=_iso(now) or "",
        session_timeout_minutes=session_timeout_minutes,
        overall=topic_metrics(ALL_TOPICS, chosen, operator_minutes, costs),
        topics=topics, days=days,
        conversations=[o.to_dict() for o in sorted(chosen, key=lambda o: o.started_at)] if with_conversations else [],
    )
