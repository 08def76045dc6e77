"""The operator's copilot: per-topic modes (``copilot.yml``) and the draft events for analytics.

For the customer's last message the operator can ask for a draft — what the scenario or the
knowledge base (RAG) would answer, with its confidence and source — then like / dislike it, edit
it and send it, or discard it. Every step is a row of ``copilot_events`` (topic = the intent):

* ``draft_shown`` — the draft, its confidence and source, the customer message it answers;
* ``rated`` — like / dislike (an operator may change their mind: the last rating counts);
* ``sent`` — the final text, the character edit distance to the draft, outcome ``as_is`` / ``edited``
  (the operator reply is stored in the same transaction, for the channel to deliver);
* ``discarded`` — outcome ``discarded``.

:func:`copilot_stats` aggregates them per topic: drafts, like rate, share sent as-is, mean edit
distance. Producing the draft itself (asking Rasa / the RAG service) is the console's job, through
a :class:`DraftProvider`.
"""
from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Union

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from sqlalchemy import select
from sqlalchemy.orm import Session

from handoff.errors import (
    DraftAlreadyResolved,
    DraftNotFound,
    IllegalTransition,
    InvalidInput,
    InvalidModesFile,
    NotOwner,
)
from handoff.machine import (
    ConversationView,
    HandoffService,
    MessageView,
    State,
    _conversation_id,
    _operator,
    _text,
    iso,
)
from handoff.models import RATINGS, CopilotEvent, Message
from handoff.settings import DEFAULT_MODES_FILE, HandoffSettings

UNKNOWN_TOPIC = "unknown"
_TOPIC = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


# --- modes ------------------------------------------------------------------------------------


class Mode(str, Enum):
    AUTONOMOUS = "autonomous"  # the bot answers by itself
    COPILOT = "copilot"  # the bot only drafts; an operator answers


def _mode(value: Any, where: str, origin: str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        allowed = ", ".join(mode.value for mode in Mode)
        raise InvalidModesFile(f"{origin}: {where} must be one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class CopilotModes:
    default: Mode = Mode.AUTONOMOUS
    topics: Mapping[str, Mode] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, data: Any, *, origin: str = "copilot.yml", known_topics: Optional[Iterable[str]] = None
    ) -> "CopilotModes":
        """From the loaded YAML; :class:`InvalidModesFile` on unknown keys, modes or topics."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidModesFile(f"{origin}: expected a mapping with `default` and `topics`")
        unknown = sorted(set(data) - {"default", "topics"})
        if unknown:
            raise InvalidModesFile(f"{origin}: unknown keys {', '.join(map(str, unknown))} (expected default, topics)")
        default = _mode(data.get("default", Mode.AUTONOMOUS.value), "default", origin)
        raw_topics = data.get("topics") or {}
        if not isinstance(raw_topics, Mapping):
            raise InvalidModesFile(f"{origin}: `topics` must map intents to modes")
        known = set(known_topics) if known_topics is not None else None
        topics: Dict[str, Mode] = {}
        for topic, mode in raw_topics.items():
            if not isinstance(topic, str) or not _TOPIC.match(topic):
                raise InvalidModesFile(f"{origin}: {topic!r} is not an intent name")
            if known is not None and topic not in known:
                raise InvalidModesFile(f"{origin}: topic {topic!r} is not an intent of the domain")
            topics[topic] = _mode(mode, f"topics.{topic}", origin)
        return cls(default, topics)

    @classmethod
    def load(cls, path: Union[Path, str, None] = None, *, known_topics: Optional[Iterable[str]] = None) -> "CopilotModes":
        path = Path(path) if path is not None else DEFAULT_MODES_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidModesFile(f"{path}: cannot read the copilot modes file ({error})") from error
        try:
            data = YAML(typ="safe").load(text)
        except YAMLError as error:
            raise InvalidModesFile(f"{path}: not valid YAML ({error})") from error
        return cls.parse(data, origin=str(path), known_topics=known_topics)

    def mode_for(self, intent: Optional[str]) -> Mode:
        """The mode of a topic; the default for unlisted intents and for no intent at all."""
        return self.topics.get(intent or "", self.default)

    def is_copilot(self, intent: Optional[str]) -> bool:
        return self.mode_for(intent) is Mode.COPILOT


@lru_cache(maxsize=1)
def default_modes() -> CopilotModes:
    """The modes of ``HANDOFF_MODES_FILE`` (``copilot.yml``), read once per process."""
    return CopilotModes.load(HandoffSettings.from_env().modes_file)


def mode_for(intent: Optional[str]) -> Mode:
    """The mode of a topic by the default modes file."""
    return default_modes().mode_for(intent)


# --- edit distance ----------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance on characters (insertions, deletions, substitutions each cost 1)."""
    if a == b:
        return 0
    # common prefix / suffix cost nothing: an operator's edit usually touches one place
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


# --- drafts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """What the bot would answer: the text, its confidence (0..1) and where it comes from
    (``scenario:<intent>``, ``rag:<article id>``...); ``topic`` overrides the conversation's intent."""

    text: str
    confidence: Optional[float] = None
    source: Optional[str] = None
    topic: Optional[str] = None


class DraftProvider(Protocol):
    """Produces a draft for the customer's message (the console implements it with Rasa / RAG)."""

    async def draft(self, conversation: ConversationView, message: MessageView) -> Draft:
        ...


@dataclass(frozen=True)
class DraftRef:
    """A draft shown to an operator: ``id`` is what rate / send / discard take."""

    id: int
    conversation_id: str
    message_id: int
    topic: str
    operator_id: str
    text: str
    confidence: Optional[float]
    source: Optional[str]
    at: datetime

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "topic": self.topic,
            "operator_id": self.operator_id,
            "text": self.text,
            "confidence": self.confidence,
            "source": self.source,
            "at": iso(self.at),
        }


@dataclass(frozen=True)
class SendResult:
    draft_id: int
    message: MessageView  # the operator line, undelivered: the channel delivers it
    edit_distance: int
    outcome: str  # as_is | edited


@dataclass(frozen=True)
class TopicStats:
    topic: str
    drafts: int = 0
    rated: int = 0
    likes: int = 0
    dislikes: int = 0
    sent: int = 0
    sent_as_is: int = 0
    edited: int = 0
    discarded: int = 0
    unresolved: int = 0  # shown, neither sent nor discarded (yet)
    like_rate: Optional[float] = None  # likes / rated drafts
    as_is_share: Optional[float] = None  # sent as-is / sent
    mean_edit_distance: Optional[float] = None  # over sent drafts
    mean_confidence: Optional[float] = None  # over drafts with a confidence

    def to_dict(self) -> Dict[str, Any]:
        return dict(vars(self))


def _confidence(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInput("A draft's confidence is a number between 0 and 1.")
    return float(value)


class Copilot:
    """Copilot events on top of a :class:`HandoffService` (same database, same transactions)."""

    def __init__(self, service: HandoffService, modes: Optional[CopilotModes] = None) -> None:
        self.service = service
        self.modes = modes or CopilotModes()

    def mode_for(self, intent: Optional[str]) -> Mode:
        return self.modes.mode_for(intent)

    # --- events ---------------------------------------------------------------------------------

    def draft_shown(
        self, conversation_id: str, operator: str, draft: Draft, *, message_id: Optional[int] = None
    ) -> DraftRef:
        """Record a draft shown to the owning operator for a customer message (by default the
        conversation's last customer message)."""
        conversation_id, operator = _conversation_id(conversation_id), _operator(operator)
        if not isinstance(draft, Draft):
            raise InvalidInput("draft must be a Draft.")
        text = _text(draft.text, "draft")
        confidence = _confidence(draft.confidence)
        source = (draft.source or None) and str(draft.source)[:500]

        def work(session: Session, now: datetime) -> DraftRef:
            conversation = self.service.locked_or_missing(session, conversation_id)
            _require_owner(conversation.state, conversation.operator_id, operator, "draft_shown")
            message = _customer_message(session, conversation_id, message_id)
            topic = draft.topic or (conversation.summary or {}).get("intent") or UNKNOWN_TOPIC
            event = CopilotEvent(
                conversation_id=conversation_id, message_id=message.id, operator_id=operator, topic=str(topic)[:64],
                kind="draft_shown", draft_text=text, confidence=confidence, source=source, at=now,
            )
            session.add(event)
            session.flush()
            event.draft_id = event.id
            return DraftRef(event.id, conversation_id, message.id, event.topic, operator, text, confidence, source, now)

        return self.service.write(work)

    def rate(self, draft_id: int, operator: str, rating: str) -> None:
        """like / dislike a draft (again: the last rating counts)."""
        operator = _operator(operator)
        if rating not in RATINGS:
            raise InvalidInput(f"A rating is one of {', '.join(RATINGS)}.")

        def work(session: Session, now: datetime) -> None:
            shown = _draft(session, draft_id)
            session.add(_follow_up(shown, "rated", operator, now, rating=rating))

        self.service.write(work)

    def send(self, draft_id: int, operator: str, final_text: str) -> SendResult:
        """Send the (possibly edited) draft as the operator's reply; records the edit distance and
        whether it went as-is or edited."""
        operator, final_text = _operator(operator), _text(final_text, "final text")

        def work(session: Session, now: datetime) -> SendResult:
            shown = _draft(session, draft_id)
            conversation = self.service.locked_or_missing(session, shown.conversation_id)
            _require_unresolved(session, shown)
            reply = self.service.reply_as_operator(session, conversation, operator, final_text, now)
            distance = levenshtein(shown.draft_text, final_text)
            outcome = "as_is" if distance == 0 else "edited"
            session.add(
                _follow_up(
                    shown, "sent", operator, now, final_text=final_text, edit_distance=distance,
                    outcome=outcome, reply_message_id=reply.id,
                )
            )
            return SendResult(shown.id, MessageView.of(reply), distance, outcome)

        return self.service.write(work)

    def discard(self, draft_id: int, operator: str) -> None:
        """The operator throws the draft away (by the operator it was shown to)."""
        operator = _operator(operator)

        def work(session: Session, now: datetime) -> None:
            shown = _draft(session, draft_id)
            self.service.locked_or_missing(session, shown.conversation_id)  # serialise with send
            if shown.operator_id != operator:
                raise NotOwner(f"The draft was shown to {shown.operator_id!r}, not {operator!r}.")
            _require_unresolved(session, shown)
            session.add(_follow_up(shown, "discarded", operator, now, outcome="discarded"))

        self.service.write(work)

    def events(self, conversation_id: str) -> List[Dict[str, Any]]:
        """The copilot events of a conversation, oldest first (for the console and for tests)."""
        conversation_id = _conversation_id(conversation_id)
        query = select(CopilotEvent).where(CopilotEvent.conversation_id == conversation_id).order_by(CopilotEvent.id)
        return self.service.read(lambda session, now: [_event_dict(row) for row in session.execute(query).scalars()])

    def stats(self, *, since: Optional[datetime] = None, until: Optional[datetime] = None) -> Dict[str, TopicStats]:
        return copilot_stats(self.service, since=since, until=until)


def _require_owner(state: str, owner: Optional[str], operator: str, action: str) -> None:
    if state != State.OPERATOR.value:
        raise IllegalTransition(
            f"The copilot works for a conversation with an operator; this one is {state}.", state=state, action=action
        )
    if owner != operator:
        raise NotOwner(f"The conversation belongs to {owner!r}, not {operator!r}.")


def _customer_message(session: Session, conversation_id: str, message_id: Optional[int]) -> Message:
    query = select(Message).where(Message.conversation_id == conversation_id, Message.sender == "customer")
    if message_id is not None:
        message = session.execute(query.where(Message.id == int(message_id))).scalar_one_or_none()
        if message is None:
            raise InvalidInput(f"Message {message_id} is not a customer message of this conversation.")
        return message
    message = session.execute(query.order_by(Message.id.desc()).limit(1)).scalar_one_or_none()
    if message is None:
        raise InvalidInput("The conversation has no customer message to draft an answer for.")
    return message


def _draft(session: Session, draft_id: Any) -> CopilotEvent:
    try:
        key = int(draft_id)
    except (TypeError, ValueError):
        raise DraftNotFound(f"No draft {draft_id!r}.") from None
    event = session.get(CopilotEvent, key)
    if event is None or event.kind != "draft_shown":
        raise DraftNotFound(f"No draft {draft_id!r}.")
    return event


def _require_unresolved(session: Session, shown: CopilotEvent) -> None:
    resolved = session.execute(
        select(CopilotEvent.kind).where(CopilotEvent.draft_id == shown.id, CopilotEvent.kind.in_(("sent", "discarded")))
    ).first()
    if resolved is not None:
        raise DraftAlreadyResolved(f"Draft {shown.id} has already been {resolved.kind}.")


def _follow_up(shown: CopilotEvent, kind: str, operator: str, now: datetime, **values: Any) -> CopilotEvent:
    return CopilotEvent(
        draft_id=shown.id, conversation_id=shown.conversation_id, message_id=shown.message_id, operator_id=operator,
        topic=shown.topic, kind=kind, draft_text=shown.draft_text, confidence=shown.confidence, source=shown.source,
        at=now, **values,
    )


def _event_dict(row: CopilotEvent) -> Dict[str, Any]:
    return {
        "id": row.id, "draft_id": row.draft_id, "conversation_id": row.conversation_id, "message_id": row.message_id,
        "reply_message_id": row.reply_message_id, "operator_id": row.operator_id, "topic": row.topic,
        "kind": row.kind, "draft_text": row.draft_text, "final_text": row.final_text, "rating": row.rating,
        "edit_distance": row.edit_distance, "outcome": row.outcome, "confidence": row.confidence,
        "source": row.source, "at": iso(row.at),
    }


def _ratio(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


def _mean(values: List[float]) -> Optional[float]:
    return round(sum(values) / len(values), 4) if values else None


def copilot_stats(
    service: HandoffService, *, since: Optional[datetime] = None, until: Optional[datetime] = None
) -> Dict[str, TopicStats]:
    """Per topic (intent), over the drafts shown in [since, until): drafts, like rate (last rating
    of each rated draft), sent as-is share, mean edit distance of the sent ones, mean confidence."""
    query = select(CopilotEvent).order_by(CopilotEvent.id)

    def work(session: Session, now: datetime) -> List[CopilotEvent]:
        return list(session.execute(query).scalars())

    rows = service.read(work)
    drafts = {
        row.id: row for row in rows
        if row.kind == "draft_shown" and (since is None or row.at >= since) and (until is None or row.at < until)
    }
    rating: Dict[int, str] = {}
    resolution: Dict[int, CopilotEvent] = {}
    for row in rows:
        if row.draft_id not in drafts or row.kind == "draft_shown":
            continue
        if row.kind == "rated":
            rating[row.draft_id] = row.rating  # later rows win
        elif row.draft_id not in resolution:
            resolution[row.draft_id] = row
    per_topic: Dict[str, List[CopilotEvent]] = defaultdict(list)
    for draft in drafts.values():
        per_topic[draft.topic].append(draft)
    stats: Dict[str, TopicStats] = {}
    for topic in sorted(per_topic):
        shown = per_topic[topic]
        ratings = [rating[d.id] for d in shown if d.id in rating]
        resolved = [resolution[d.id] for d in shown if d.id in resolution]
        sent = [r for r in resolved if r.kind == "sent"]
        as_is = sum(1 for r in sent if r.outcome == "as_is")
        likes = ratings.count("like")
        stats[topic] = TopicStats(
            topic=topic,
            drafts=len(shown),
            rated=len(ratings),
            likes=likes,
            dislikes=len(ratings) - likes,
            sent=len(sent),
            sent_as_is=as_is,
            edited=len(sent) - as_is,
            discarded=sum(1 for r in resolved if r.kind == "discarded"),
            unresolved=len(shown) - len(resolved),
            like_rate=_ratio(likes, len(ratings)),
            as_is_share=_ratio(as_is, len(sent)),
            mean_edit_distance=_mean([float(r.edit_distance) for r in sent]),
            mean_confidence=_mean([d.confidence for d in shown if d.confidence is not None]),
        )
    return stats
