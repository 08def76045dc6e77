"""Copilot: per-topic modes (copilot.yml), draft events, edit distance, analytics."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from handoff.copilot import Copilot, CopilotModes, Draft, Mode, copilot_stats, levenshtein, mode_for
from handoff.errors import (
    DraftAlreadyResolved,
    DraftNotFound,
    IllegalTransition,
    InvalidInput,
    InvalidModesFile,
    NotOwner,
)
from handoff.machine import HandoffService
from handoff.settings import PROJECT_ROOT

# --- modes ------------------------------------------------------------------------------------


def _domain_intents() -> list:
    return YAML(typ="safe").load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))["intents"]


def test_project_modes_file_is_valid_and_corporate_documents_go_to_an_operator():
    modes = CopilotModes.load(PROJECT_ROOT / "copilot.yml", known_topics=_domain_intents())
    assert modes.default is Mode.AUTONOMOUS
    assert modes.mode_for("b2b_documents") is Mode.COPILOT and modes.is_copilot("b2b_documents")
    for topic in ("refund_request", "complaint", "greet", "check_balance", "knowledge_question", None, "never_heard_of"):
        assert modes.mode_for(topic) is Mode.AUTONOMOUS
    assert mode_for("b2b_documents") is Mode.COPILOT  # the module-level default modes


def test_modes_parse_default_and_topics():
    modes = CopilotModes.parse({"default": "copilot", "topics": {"greet": "autonomous"}})
    assert modes.mode_for("greet") is Mode.AUTONOMOUS and modes.mode_for("other") is Mode.COPILOT
    assert CopilotModes.parse(None) == CopilotModes()
    assert CopilotModes.parse({"topics": None}).default is Mode.AUTONOMOUS


@pytest.mark.parametrize(
    "data, message",
    [
        (["default"], "expected a mapping"),
        ({"default": "manual"}, "default must be one of autonomous, copilot"),
        ({"topics": {"refund_request": "sometimes"}}, "topics.refund_request must be one of"),
        ({"topics": {"refund_request": True}}, "topics.refund_request"),
        ({"topics": ["refund_request"]}, "`topics` must map"),
        ({"topics": {"bad name!": "copilot"}}, "is not an intent name"),
        ({"topics": {"unknown_intent": "copilot"}}, "not an intent of the domain"),
        ({"defaults": "copilot"}, "unknown keys defaults"),
    ],
)
def test_invalid_modes_are_refused(data, message):
    with pytest.raises(InvalidModesFile, match=message):
        CopilotModes.parse(data, known_topics=["refund_request", "greet"])


def test_modes_file_errors(tmp_path: Path):
    with pytest.raises(InvalidModesFile, match="cannot read"):
        CopilotModes.load(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("default: [unclosed\n", encoding="utf-8")
    with pytest.raises(InvalidModesFile, match="not valid YAML"):
        CopilotModes.load(broken)
    good = tmp_path / "good.yml"
    good.write_text("# comment\ndefault: copilot\ntopics:\n  greet: autonomous\n", encoding="utf-8")
    assert CopilotModes.load(good).mode_for("thank") is Mode.COPILOT


# --- edit distance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, distance",
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "abc", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("Здравствуйте", "Здравствуйте!", 1),
        ("Возврат до 10 дней", "Возврат до 14 дней", 1),
        ("abc", "cba", 2),
    ],
)
def test_levenshtein(a, b, distance):
    assert levenshtein(a, b) == distance == levenshtein(b, a)


def _reference(a: str, b: str) -> int:
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


def test_levenshtein_matches_the_textbook_table_on_random_strings():
    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("абв ") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("абв ") for _ in range(rng.randint(0, 12)))
        assert levenshtein(a, b) == _reference(a, b)


# --- events -----------------------------------------------------------------------------------


def _with_operator(service: HandoffService, cid: str = "c1", intent: str = "refund_request") -> int:
    service.customer_message(cid, "Хочу вернуть сертификат")
    service.hand_over(cid, "1", {"intent": intent}, [])
    service.take(cid, "anna")
    service.customer_message(cid, "Заказ 40817263, куплен неделю назад")
    return service.conversation(cid).messages[-1].id


def test_draft_rate_send_as_is(service: HandoffService, copilot: Copilot):
    last = _with_operator(service)
    draft = copilot.draft_shown("c1", "anna", Draft("Оформлю возврат за 10 дней.", 0.82, "scenario:refund_request"))
    assert (draft.message_id, draft.topic, draft.confidence, draft.source) == (last, "refund_request", 0.82, "scenario:refund_request")
    copilot.rate(draft.id, "anna", "dislike")
    copilot.rate(draft.id, "anna", "like")  # changed her mind: the last rating counts
    sent = copilot.send(draft.id, "anna", "Оформлю возврат за 10 дней.")
    assert (sent.edit_distance, sent.outcome) == (0, "as_is")
    assert sent.message.sender == "operator" and not sent.message.delivered
    assert [m.id for m in service.pending_operator_messages("c1")] == [sent.message.id]
    events = copilot.events("c1")
    assert [e["kind"] for e in events] == ["draft_shown", "rated", "rated", "sent"]
    assert {e["draft_id"] for e in events} == {draft.id} and {e["topic"] for e in events} == {"refund_request"}
    assert events[-1]["reply_message_id"] == sent.message.id and events[-1]["final_text"] == "Оформлю возврат за 10 дней."
    with pytest.raises(DraftAlreadyResolved):
        copilot.send(draft.id, "anna", "ещё раз")
    with pytest.raises(DraftAlreadyResolved):
        copilot.discard(draft.id, "anna")


def test_send_edited_and_discard(service: HandoffService, copilot: Copilot):
    _with_operator(service)
    first = copilot.draft_shown("c1", "anna", Draft("Возврат займёт 10 дней", 0.6, "rag:article-12"))
    sent = copilot.send(first.id, "anna", "Возврат займёт до 10 рабочих дней")
    assert sent.outcome == "edited" and sent.edit_distance == levenshtein("Возврат займёт 10 дней", "Возврат займёт до 10 рабочих дней")
    second = copilot.draft_shown("c1", "anna", Draft("Не знаю", 0.1, None, topic="knowledge_question"))
    copilot.discard(second.id, "anna")
    assert [(e["kind"], e["outcome"]) for e in copilot.events("c1")][-1] == ("discarded", "discarded")


def test_copilot_rules(service: HandoffService, copilot: Copilot):
    service.customer_message("c1", "Привет")
    with pytest.raises(IllegalTransition):  # the bot still owns it
        copilot.draft_shown("c1", "anna", Draft("Привет!"))
    _with_operator(service, "c2")
    with pytest.raises(NotOwner):
        copilot.draft_shown("c2", "boris", Draft("Привет!"))
    with pytest.raises(InvalidInput):
        copilot.draft_shown("c2", "anna", Draft("Привет!", confidence=1.5))
    with pytest.raises(InvalidInput):
        copilot.draft_shown("c2", "anna", Draft("Привет!"), message_id=10_000)
    draft = copilot.draft_shown("c2", "anna", Draft("Привет!"))
    with pytest.raises(InvalidInput):
        copilot.rate(draft.id, "anna", "meh")
    with pytest.raises(DraftNotFound):
        copilot.rate(10_000, "anna", "like")
    with pytest.raises(DraftNotFound):
        copilot.send("nope", "anna", "x")
    with pytest.raises(NotOwner):
        copilot.send(draft.id, "boris", "Привет!")
    with pytest.raises(NotOwner):
        copilot.discard(draft.id, "boris")
    service.return_to_bot("c2", "anna")
    with pytest.raises(IllegalTransition):  # no operator any more: nothing can be sent
        copilot.send(draft.id, "anna", "Привет!")
    copilot.discard(draft.id, "anna")  # but the one it was shown to can still discard it
    assert copilot.mode_for("b2b_documents") is Mode.COPILOT


def test_stats_per_topic(service: HandoffService, copilot: Copilot):
    _with_operator(service, "c1", intent="refund_request")
    _with_operator(service, "c2", intent="complaint")
    a = copilot.draft_shown("c1", "anna", Draft("abcd", 0.9, "scenario:refund_request"))
    copilot.rate(a.id, "anna", "like")
    copilot.send(a.id, "anna", "abcd")
    b = copilot.draft_shown("c1", "anna", Draft("abcd", 0.5, "rag:1"))
    copilot.rate(b.id, "anna", "dislike")
    copilot.send(b.id, "anna", "abXdY")  # distance 2
    c = copilot.draft_shown("c1", "anna", Draft("zzz", 0.4))
    copilot.discard(c.id, "anna")
    copilot.draft_shown("c1", "anna", Draft("still open"))
    d = copilot.draft_shown("c2", "anna", Draft("Сожалеем", 0.7))
    copilot.rate(d.id, "anna", "like")

    stats = copilot.stats()
    refund = stats["refund_request"]
    assert (refund.drafts, refund.rated, refund.likes, refund.dislikes) == (4, 2, 1, 1)
    assert (refund.sent, refund.sent_as_is, refund.edited, refund.discarded, refund.unresolved) == (2, 1, 1, 1, 1)
    assert (refund.like_rate, refund.as_is_share, refund.mean_edit_distance) == (0.5, 0.5, 1.0)
    assert refund.mean_confidence == 0.6
    complaint = stats["complaint"].to_dict()
    assert complaint["drafts"] == 1 and complaint["like_rate"] == 1.0 and complaint["as_is_share"] is None
    assert copilot_stats(service, since=service.clock().replace(year=2100)) == {}
