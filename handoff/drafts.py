"""Copilot drafts: what the assistant would answer to a customer's message, without answering it.

:class:`AssistantDraftProvider` asks the running assistant, read-only:

1. the NLU gives the intent and its confidence (the copilot *topic*): in the Rasa server's own
   process (the hand-over gateway) its agent, elsewhere (the console) ``/model/parse``;
2. a question for the knowledge base (``knowledge_question``, ``out_of_scope``, ``nlu_fallback``)
   is answered by the action server's read-only ``action_copilot_draft`` — the process that owns
   the knowledge-base index (an embedded Qdrant folder opens in one process only); when the action
   server cannot be reached and a local knowledge service was given (the console gives one when
   the index is a Qdrant server, ``RAG_QDRANT_URL``, which many processes may share), that one;
3. a scenario topic gets the scenario's first reply: the intent's rule in ``scenarios/*.yml``
   starts a form → the question of its first required slot the message does not fill
   (``utter_ask_<form>_<slot>`` or ``utter_ask_<slot>``), or an ``utter_*`` response;
4. otherwise a generic line the operator edits.

Nothing here changes a conversation: the draft is only offered to the operator (``handoff.copilot``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from handoff.copilot import Draft
from handoff.machine import ConversationView, MessageView
from handoff.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

#: intents the assistant answers from the knowledge base (scenarios/rules.yml → action_answer_question)
KNOWLEDGE_INTENTS = ("knowledge_question", "out_of_scope", "nlu_fallback")
#: the action server's read-only drafting action (actions/knowledge_actions.py)
DRAFT_ACTION = "action_copilot_draft"
GENERIC_DRAFT = "Здравствуйте! Спасибо, что подождали. Уточните, пожалуйста, детали — я помогу."


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))


def _post_json(url: str, payload: Any, timeout: float = 15.0) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _load_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML

    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("copilot drafts: cannot read %s (%s)", path, error)
        return None


@dataclass(frozen=True)
class ScenarioReplies:
    """The first reply of each scenario topic, from the domain and the scenario rules."""

    responses: Mapping[str, str]  # response name -> its first plain text
    forms: Mapping[str, Tuple[str, ...]]  # form -> required slots
    first_action: Mapping[str, str]  # intent -> the action its rule runs first

    @classmethod
    def load(cls, project_root: Path = PROJECT_ROOT) -> "ScenarioReplies":
        domain = _load_yaml(project_root / "domain.yml") or {}
        responses: Dict[str, str] = {}
        for name, variants in (domain.get("responses") or {}).items():
            for variant in variants or ():
                if isinstance(variant, Mapping) and variant.get("text"):
                    responses[str(name)] = str(variant["text"])
                    break
        forms = {
            str(name): tuple(str(slot) for slot in (spec or {}).get("required_slots") or ())
            for name, spec in (domain.get("forms") or {}).items()
        }
        first_action: Dict[str, str] = {}
        for path in sorted((project_root / "scenarios").glob("*.yml")):
            for rule in (_load_yaml(path) or {}).get("rules") or ():
                if not isinstance(rule, Mapping) or rule.get("condition"):
                    continue  # only rules a message can start on its own
                steps = [step for step in rule.get("steps") or () if isinstance(step, Mapping)]
                if len(steps) >= 2 and "intent" in steps[0] and "action" in steps[1]:
                    first_action.setdefault(str(steps[0]["intent"]), str(steps[1]["action"]))
        return cls(responses, forms, first_action)

    def reply(self, intent: str, filled: Sequence[str] = ()) -> Optional[Tuple[str, str]]:
        """(text, source) of the scenario's first reply to ``intent``; None when it has no
        fixed text (a custom action decides at run time) or the text needs values only the
        conversation has."""
        action = self.first_action.get(intent) or f"utter_{intent}"
        if action in self.forms:
            for slot in self.forms[action]:
                if slot in filled:
                    continue
                for name in (f"utter_ask_{action}_{slot}", f"utter_ask_{slot}"):
                    text = self.responses.get(name)
                    if text and "{" not in text:
                        return text, f"scenario:{action}"
                return None
            return None
        text = self.responses.get(action)
        if text and "{" not in text:
            return text, f"scenario:{intent}"
        return None


class AssistantDraftProvider:
    """Drafts from the running assistant (see the module doc); implements ``handoff.copilot.DraftProvider``."""

    def __init__(
        self,
        rasa_url: str,
        action_server_url: Optional[str] = None,
        knowledge: Optional[Callable[[], Any]] = None,
        scenarios: Optional[ScenarioReplies] = None,
        timeout: float = 15.0,
        parser: Optional[Callable[[str], Awaitable[Dict[str, Any]]]] = None,
    ) -> None:
        """``parser``: the NLU in this process (the hand-over gateway passes its agent's
        ``parse_message``); else Rasa's ``/model/parse`` at ``rasa_url``."""
        self._parser = parser
        self.rasa_url = rasa_url.rstrip("/")
        self.action_server_url = action_server_url.rstrip("/") if action_server_url else None
        self._knowledge_factory = knowledge
        self._knowledge: Any = None
        self._scenarios = scenarios
        self.timeout = timeout

    @property
    def scenarios(self) -> ScenarioReplies:
        if self._scenarios is None:
            self._scenarios = ScenarioReplies.load()
        return self._scenarios

    async def parse(self, text: str) -> Dict[str, Any]:
        """Rasa's parse of ``text`` ({} when the Rasa server cannot be reached)."""
        if self._parser is not None:
            return dict(await self._parser(text) or {})
        try:
            return await _call(_post_json, f"{self.rasa_url}/model/parse", {"text": text}, self.timeout) or {}
        except (urllib.error.URLError, OSError, ValueError) as error:
            logger.warning("copilot: /model/parse failed (%s)", error)
            return {}

    async def draft(self, conversation: ConversationView, message: MessageView) -> Draft:
        return await self.draft_for(message.text)

    async def draft_for(self, text: str, parsed: Optional[Mapping[str, Any]] = None) -> Draft:
        parsed = parsed if parsed is not None else await self.parse(text)
        intent_data = parsed.get("intent") or {}
        intent = intent_data.get("name")
        confidence = intent_data.get("confidence")
        confidence = float(confidence) if isinstance(confidence, (int, float)) and 0 <= confidence <= 1 else None
        if intent in KNOWLEDGE_INTENTS or not intent:
            answer = await self.knowledge_draft(text)
            if answer is not None:
                return Draft(answer[0], answer[1], answer[2], intent)
        filled = [str(entity.get("entity")) for entity in parsed.get("entities") or () if isinstance(entity, Mapping)]
        scenario = self.scenarios.reply(intent, filled) if intent else None
        if scenario is not None:
            return Draft(scenario[0], confidence, scenario[1], intent)
        return Draft(GENERIC_DRAFT, confidence, f"generic:{intent or 'unknown'}", intent)

    async def knowledge_draft(self, text: str) -> Optional[Tuple[str, Optional[float], str]]:
        """(text, confidence, source) of the knowledge-base answer; None when there is none."""
        found = await self._from_action_server(text)
        if found is None:
            found = await self._from_local_index(text)
        if not found or found.get("status") != "answered" or not found.get("text"):
            return None
        score = found.get("score")
        score = float(score) if isinstance(score, (int, float)) else None
        if score is not None:
            score = min(max(score, 0.0), 1.0)
        title = found.get("source_title")
        source = f"rag:{found.get('article_id')}" + (f" ({title})" if title else "")
        return str(found["text"]), score, source

    async def _from_action_server(self, text: str) -> Optional[Dict[str, Any]]:
        if not self.action_server_url:
            return None
        payload = {
            "next_action": DRAFT_ACTION,
            "sender_id": "copilot-draft",
            "version": "3.6",
            "domain": {},
            "tracker": {
                "sender_id": "copilot-draft",
                "slots": {},
                "latest_message": {"text": text, "intent": {}, "entities": []},
                "events": [],
                "paused": False,
                "followup_action": None,
                "active_loop": {},
                "latest_action_name": "action_listen",
            },
        }
        try:
            result = await _call(_post_json, f"{self.action_server_url}/webhook", payload, self.timeout)
        except (urllib.error.URLError, OSError, ValueError) as error:
            logger.warning("copilot: the action server did not draft (%s)", error)
            return None
        for response in (result or {}).get("responses") or ():
            custom = response.get("custom") if isinstance(response, Mapping) else None
            if isinstance(custom, Mapping) and isinstance(custom.get("copilot_draft"), Mapping):
                return dict(custom["copilot_draft"])
        logger.warning("copilot: the action server's reply has no draft")
        return None

    async def _from_local_index(self, text: str) -> Optional[Dict[str, Any]]:
        if self._knowledge_factory is None:
            return None
        try:
            if self._knowledge is None:
                self._knowledge = self._knowledge_factory()
            result = await _call(self._knowledge.answer, text)
        except Exception as error:  # e.g. the embedded index is held by the action server
            logger.warning("copilot: no knowledge-base draft (%s)", error)
            return None
        return knowledge_draft_payload(result)


def knowledge_draft_payload(result: Any) -> Dict[str, Any]:
    """A :class:`rag.service.RagResult` as the draft payload the action server returns."""
    return {
        "status": result.status,
        "text": result.text,
        "article_id": result.article_id,
        "source_title": result.source_title,
        "score": result.score,
    }


def attached_draft(summary: Optional[Mapping[str, Any]], customer_text: str) -> Optional[Draft]:
    """The draft a copilot hand-over attached to the summary, if it answers ``customer_text``."""
    data = (summary or {}).get("draft")
    if not isinstance(data, Mapping) or data.get("for_text") != customer_text or not data.get("text"):
        return None
    confidence = data.get("confidence")
    return Draft(
        str(data["text"]),
        float(confidence) if isinstance(confidence, (int, float)) else None,
        str(data["source"]) if data.get("source") else None,
        str(data["topic"]) if data.get("topic") else None,
    )


def draft_summary(draft: Draft, customer_text: str) -> Dict[str, Any]:
    """The draft as the hand-over summary carries it (see :func:`attached_draft`)."""
    return {
        "text": draft.text,
        "confidence": draft.confidence,
        "source": draft.source,
        "topic": draft.topic,
        "for_text": customer_text,
    }


__all__: List[str] = [
    "AssistantDraftProvider",
    "ScenarioReplies",
    "attached_draft",
    "draft_summary",
    "knowledge_draft_payload",
    "KNOWLEDGE_INTENTS",
    "GENERIC_DRAFT",
]
