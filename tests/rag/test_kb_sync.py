"""The knowledge service follows its KB folder while serving: edits, new and removed articles are
answered from within one check interval, without a restart; a broken article keeps the old index."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import rag.ingest
from rag.service import ANSWERED, KnowledgeService, kb_fingerprint
from rag.settings import RagSettings

INTERVAL = 0.2  # kb_check_seconds of the tests: short, so that waiting one interval is cheap
EXPIRED = "сертификат сгорел что делать"  # not answered by the fixture KB
RECEIPT = "где найти чек об оплате"  # no fixture article is about receipts
RECEIPT_ARTICLE = """---
id: receipt
title: Где найти чек об оплате
tags: [чек, оплата]
related: []
---
Чек об оплате приходит на e-mail вместе с сертификатом сразу после оплаты.

## Если чека нет
Проверьте папку «Спам» или попросите ассистента отправить чек повторно.
"""


@pytest.fixture
def make_service(kb_copy, tmp_path):
    """Services over the writable copy of the fixture KB, each with its own embedded index."""
    services = []

    def make(check_seconds: float = INTERVAL, store: str = "qdrant") -> KnowledgeService:
        settings = RagSettings(
            kb_dir=kb_copy, qdrant_path=tmp_path / store, collection="sync", sync_on_start=True,
            answer_threshold=0.8, clarify_threshold=0.7, kb_check_seconds=check_seconds,
        )
        service = KnowledgeService.from_settings(settings).warm_up()
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def _wait_one_interval() -> None:
    time.sleep(INTERVAL * 1.5)


def _add_expired_alias(kb: Path) -> None:
    path = kb / "certificate-validity.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("related: [check-balance]\n", "related: [check-balance]\nquestions:\n  - Сертификат сгорел, что делать?\n"),
        encoding="utf-8",
    )


def test_a_new_question_alias_is_answered_within_one_interval(make_service, kb_copy):
    service = make_service()
    retriever = service.retriever
    before = service.answer(EXPIRED)
    assert before.status != ANSWERED

    _add_expired_alias(kb_copy)
    _wait_one_interval()
    after = service.answer(EXPIRED)
    assert after.status == ANSWERED and after.article_id == "certificate-validity"
    assert service.retriever is retriever  # the same index and retriever: no restart
    assert service.last_sync.added == 1 and service.last_sync.unchanged == service.last_sync.chunks - 1


def test_changes_are_looked_for_at_most_every_interval(make_service, kb_copy):
    service = make_service(check_seconds=60)
    _add_expired_alias(kb_copy)
    time.sleep(INTERVAL * 1.5)
    assert service.answer(EXPIRED).status != ANSWERED  # the next look is a minute away


def test_zero_turns_the_following_off(make_service, kb_copy):
    service = make_service(check_seconds=0)
    synced = service.last_sync
    _add_expired_alias(kb_copy)
    _wait_one_interval()
    assert service.answer(EXPIRED).status != ANSWERED
    assert service.last_sync is synced


def test_a_new_article_is_answered_and_a_removed_one_is_no_longer(make_service, kb_copy):
    service = make_service()
    assert service.answer(RECEIPT).article_id != "receipt"

    (kb_copy / "receipt.md").write_text(RECEIPT_ARTICLE, encoding="utf-8")
    _wait_one_interval()
    added = service.answer(RECEIPT)
    assert added.status == ANSWERED and added.article_id == "receipt"
    assert added.text.startswith("Чек об оплате приходит на e-mail")

    (kb_copy / "receipt.md").unlink()
    _wait_one_interval()
    removed = service.answer(RECEIPT)
    assert removed.article_id != "receipt" and removed.status != ANSWERED
    assert service.last_sync.deleted == 2  # its lead and its section


def test_a_corrected_article_is_answered_with_the_correction(make_service, kb_copy):
    service = make_service()
    question = "когда работают сотрудники поддержки"
    assert "с 9:00 до 21:00" in service.answer(question).text

    path = kb_copy / "support-hours.md"
    path.write_text(path.read_text(encoding="utf-8").replace("с 9:00 до 21:00", "с 8:00 до 22:00"), encoding="utf-8")
    _wait_one_interval()
    corrected = service.answer(question)
    assert corrected.status == ANSWERED and "с 8:00 до 22:00" in corrected.text
    assert service.last_sync.updated == 1 and service.last_sync.added == 0


def test_a_broken_article_is_logged_and_the_old_index_keeps_answering(make_service, kb_copy, caplog):
    service = make_service()
    synced = service.last_sync
    broken = kb_copy / "refund-conditions.md"
    good_text = broken.read_text(encoding="utf-8")
    # the alias is in the same change as the broken file: nothing of that state may reach the index
    _add_expired_alias(kb_copy)
    broken.write_text(good_text.replace("id: refund-conditions\n", "id: [refund-conditions\n"), encoding="utf-8")

    _wait_one_interval()
    with caplog.at_level("ERROR", logger="rag.service"):
        refund = service.answer("можно ли вернуть деньги за сертификат")
        expired = service.answer(EXPIRED)
    assert refund.status == ANSWERED and refund.article_id == "refund-conditions"  # the old index
    assert expired.status != ANSWERED
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "refund-conditions.md" in errors[0].getMessage()
    assert "invalid front matter" in errors[0].getMessage()
    assert service.last_sync is synced

    caplog.clear()
    _wait_one_interval()
    with caplog.at_level("ERROR", logger="rag.service"):
        service.answer(EXPIRED)
    assert not caplog.records  # not retried while the files stay as they are

    broken.write_text(good_text, encoding="utf-8")  # fixed: tried again, with the alias this time
    _wait_one_interval()
    assert service.answer(EXPIRED).status == ANSWERED
    assert service.last_sync.added == 1


def test_a_service_started_over_a_broken_article_answers_from_its_index(make_service, kb_copy, caplog):
    make_service().close()  # a previous run left the index on disk
    (kb_copy / "support-hours.md").write_text("no front matter here\n", encoding="utf-8")
    with caplog.at_level("ERROR", logger="rag.service"):
        service = make_service()
    assert "no YAML front matter" in caplog.text
    assert service.answer("когда работают сотрудники поддержки").article_id == "support-hours"


def test_a_failing_sync_keeps_answering_and_is_retried_at_the_next_check(make_service, kb_copy, monkeypatch, caplog):
    service = make_service()
    original = rag.ingest.ingest_chunks
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("qdrant went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(rag.ingest, "ingest_chunks", failing_once)
    _add_expired_alias(kb_copy)
    _wait_one_interval()
    with caplog.at_level("ERROR", logger="rag.service"):
        assert service.answer(EXPIRED).status != ANSWERED
    assert "Knowledge base sync failed" in caplog.text
    _wait_one_interval()
    assert service.answer(EXPIRED).status == ANSWERED and len(calls) == 2


def test_answers_keep_working_while_a_sync_runs(make_service, kb_copy, monkeypatch):
    service = make_service()
    original = rag.ingest.ingest_chunks
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow(*args, **kwargs):
        calls.append(1)
        started.set()
        assert release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(rag.ingest, "ingest_chunks", slow)
    _add_expired_alias(kb_copy)
    _wait_one_interval()
    with ThreadPoolExecutor(max_workers=4) as pool:
        syncing = pool.submit(service.answer, EXPIRED)  # notices the change and syncs
        assert started.wait(30)
        time.sleep(INTERVAL * 1.5)  # the next check is due too: it must not start a second sync
        during = [pool.submit(service.answer, "как проверить баланс сертификата") for _ in range(6)]
        results = [future.result(timeout=30) for future in during]
        assert not syncing.done()  # all of them were answered while the sync was still running
        release.set()
        after_sync = syncing.result(timeout=30)
    assert all(r.status == ANSWERED and r.article_id == "check-balance" for r in results)
    assert after_sync.status == ANSWERED and after_sync.article_id == "certificate-validity"
    assert len(calls) == 1  # one sync at a time


def test_every_replica_follows_the_folder_with_its_own_index(make_service, kb_copy):
    replicas = [make_service(store="replica-1"), make_service(store="replica-2")]
    _add_expired_alias(kb_copy)
    _wait_one_interval()
    assert [replica.answer(EXPIRED).status for replica in replicas] == [ANSWERED, ANSWERED]


def test_the_fingerprint_sees_added_removed_and_modified_articles_only(kb_copy, tmp_path):
    initial = kb_fingerprint(kb_copy)
    assert [name for name, _, _ in initial] == sorted(p.name for p in kb_copy.glob("*.md"))
    (kb_copy / ".support-hours.md.x1y2.tmp").write_text("half a file", encoding="utf-8")  # an editor's temp file
    (kb_copy / "notes.txt").write_text("not an article", encoding="utf-8")
    assert kb_fingerprint(kb_copy) == initial

    _add_expired_alias(kb_copy)
    modified = kb_fingerprint(kb_copy)
    assert modified != initial
    (kb_copy / "receipt.md").write_text(RECEIPT_ARTICLE, encoding="utf-8")
    added = kb_fingerprint(kb_copy)
    assert len(added) == len(initial) + 1
    (kb_copy / "receipt.md").unlink()
    assert kb_fingerprint(kb_copy) == modified
    assert kb_fingerprint(tmp_path / "missing") == ()


def test_the_check_interval_setting(tmp_path):
    assert RagSettings().kb_check_seconds == 5.0
    assert RagSettings.load(tmp_path / "none.yml", environ={"RAG_KB_CHECK_SECONDS": "0.5"}).kb_check_seconds == 0.5
    assert RagSettings.load(tmp_path / "none.yml", environ={"RAG_KB_CHECK_SECONDS": "0"}).kb_check_seconds == 0.0
    config = tmp_path / "rag.yml"
    config.write_text("kb_check_seconds: 30\n", encoding="utf-8")
    assert RagSettings.load(config, environ={}).kb_check_seconds == 30.0
    with pytest.raises(ValueError, match="RAG_KB_CHECK_SECONDS"):
        RagSettings.load(config, environ={"RAG_KB_CHECK_SECONDS": "often"})
    with pytest.raises(ValueError, match="RAG_KB_CHECK_SECONDS must be >= 0"):
        RagSettings(kb_check_seconds=-1)
