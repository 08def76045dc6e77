"""Questions no scenario covers, answered from the knowledge base (the RAG fallback, ``rag/``).

``knowledge_question``, messages the NLU did not understand (``nlu_fallback``) and questions asked
in the middle of a form come here. A confident answer is given with its source article; a close
but unsure match gets one clarifying question naming the closest articles; nothing found is a
miss. A clarification and a miss both count towards escalation rule 2 (two in a row → a human),
and a message with a threat or clear irritation goes to a human at once (rule 4).
"""
from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import threading
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import as_mapping, latest_intent, latest_text
from actions.escalation import IRRITATION, escalation_rules, hand_over, register_miss
from rag.service import KnowledgeService

logger = logging.getLogger(__name__)

ANSWERED, CLARIFY = "answered", "clarify"

_service: Optional[KnowledgeService] = None
_service_lock = threading.Lock()


def knowledge_service() -> KnowledgeService:
    """One service per action-server process: it holds the encoder and the embedded Qdrant
    folder (which only one process may open), built on first use."""
    global _service
    with _service_lock:
        if _service is None:
            _service = KnowledgeService.from_settings()
            # close the embedded Qdrant folder while the interpreter still works (its client's
            # own finaliser runs too late at exit and prints a traceback)
            atexit.register(_service.close)
        return _service


def set_knowledge_service(service: Optional[KnowledgeService]) -> None:
    """Use ``service`` from now on (another configuration, or None to build from settings again)."""
    global _service
    with _service_lock:
        _service = service


class ActionAnswerQuestion(Action):
    def name(self) -> Text:
        return "action_answer_question"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        rules = escalation_rules()
        question = latest_text(tracker).strip()
        intent = latest_intent(tracker)
        if rules.is_irritated(intent, question):
            dispatcher.utter_message(response="utter_complaint")
            return await hand_over(dispatcher, tracker, IRRITATION, rules=rules)
        no_answer = {"response": "utter_kb_no_answer" if intent == "knowledge_question" else "utter_default"}
        chosen = chosen_article(tracker)
        pending = as_mapping(tracker.get_slot("kb_clarify"))
        if chosen and pending.get("question"):
            # the customer picked one of the articles a clarifying question offered
            call = functools.partial(knowledge_service().answer_from, pending["question"], chosen)
        elif not question or question.startswith("/"):  # an empty message or a bare button payload
            return await register_miss(dispatcher, tracker, no_answer)
        else:
            call = functools.partial(knowledge_service().answer, question)
        try:
            # retrieval is CPU work: keep the action server's event loop free meanwhile
            result = await asyncio.get_running_loop().run_in_executor(None, call)
        except Exception:  # the knowledge base is a fallback: its failure must not end the conversation
            logger.exception("knowledge base unavailable; treating the question as not answered")
            return [*await register_miss(dispatcher, tracker, no_answer), *forget(pending)]
        logger.info(
            "knowledge base: %s (article %s, confidence %.3f, %.0f ms)",
            result.status, result.article_id or "-", result.score, result.seconds * 1000,
        )
        if result.status == ANSWERED:
            dispatcher.utter_message(response="utter_kb_answer", answer=result.text, source=result.source_title or "")
            return forget(pending)
        if result.status == CLARIFY and result.candidates:
            topics = " или ".join(f"«{title}»" for title in result.candidates)
            # each closest article is a quick reply: a click answers from that article
            buttons = [
                {"title": title, "payload": f'/knowledge_question{{"kb_article": "{article_id}"}}'}
                for title, article_id in zip(result.candidates, result.candidate_ids)
            ]
            clarify = {"response": "utter_kb_clarify", "topics": topics, "buttons": buttons}
            events = await register_miss(dispatcher, tracker, clarify)
            return [*events, SlotSet("kb_clarify", {"question": result.masked_question})]
        return [*await register_miss(dispatcher, tracker, no_answer), *forget(pending)]


#: actions the action server runs for other callers, never in a conversation (not in domain.yml)
NOT_IN_THE_DIALOGUE = ("action_copilot_draft",)


class ActionCopilotDraft(Action):
    """Read-only: the knowledge-base answer to the latest message, for an operator's copilot draft
    (``handoff.drafts``). Not in the domain — Rasa never runs it; the operator console calls it
    through the action server's webhook, because this process owns the knowledge-base index. It
    records no miss and escalates nothing: the customer never sees its reply."""

    def name(self) -> Text:
        return "action_copilot_draft"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        from handoff.drafts import knowledge_draft_payload

        question = latest_text(tracker).strip()
        if not question:
            dispatcher.utter_message(json_message={"copilot_draft": {"status": "no_answer"}})
            return []
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, knowledge_service().answer, question)
        except Exception:
            logger.exception("knowledge base unavailable for a copilot draft")
            dispatcher.utter_message(json_message={"copilot_draft": {"status": "unavailable"}})
            return []
        dispatcher.utter_message(json_message={"copilot_draft": knowledge_draft_payload(result)})
        return []


def forget(pending: Any) -> List[EventType]:
    """Clear the question a clarification was about, if there is one."""
    return [SlotSet("kb_clarify", None)] if pending else []


def chosen_article(tracker: Tracker) -> Optional[str]:
    """The article id a clarifying question's quick reply carries, if this message is one."""
    for entity in (tracker.latest_message or {}).get("entities") or []:
        if entity.get("entity") == "kb_article" and entity.get("value"):
            return str(entity["value"])
    return None
