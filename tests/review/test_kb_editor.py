"""review.kb_editor: safe edits of the knowledge-base folder (aliases, new articles, corrections)."""
from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from pathlib import Path
from typing import List

import pytest

from rag.documents import load_articles, parse_article
from review import files
from review.kb_editor import (
    MAX_QUESTION_CHARS, KbEditError, add_alias, create_article, read_article, replace_body,
)
from tests.rag.conftest import FIXTURE_KB

# an article written by hand: comments, 4-space items in mixed quoting, `questions` before `related`,
# a comment after the list, no final newline
HANDWRITTEN = """---
# reviewed 2026-11
id: order-number-help
title: Где найти номер заказа   # shown as the source
questions:
    - 'Где номер заказа?'
    - Как узнать номер заказа
    # - a disabled alias
related: [resend-certificate]   # see also
tags:
  - заказ
---

Номер заказа — это 8 цифр, например `40817263`; он указан в письме о заказе.

## Если письма нет
Проверьте папку «Спам»."""


@pytest.fixture
def kb(tmp_path) -> Path:
    """A writable copy of the fixture KB with one hand-written article added."""
    target = tmp_path / "kb"
    shutil.copytree(FIXTURE_KB, target)
    (target / "order-number-help.md").write_text(HANDWRITTEN, encoding="utf-8")
    return target


def _inserted(before: str, after: str) -> List[str]:
    """The lines ``after`` has in addition to ``before``, asserting every other line is unchanged."""
    old, new = before.split("\n"), after.split("\n")
    assert len(new) > len(old)
    start = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
    count = len(new) - len(old)
    assert new[:start] + new[start + count:] == old  # byte for byte apart from the inserted lines
    return new[start:start + count]


def _no_temp_files(kb: Path) -> bool:
    return not [p for p in kb.iterdir() if p.name.endswith(".tmp")]


# --- add_alias ---------------------------------------------------------------------------------

def test_an_alias_is_appended_as_one_line_in_the_style_of_the_list(kb):
    path = kb / "order-number-help.md"
    before = path.read_bytes()
    assert add_alias(kb, "order-number-help", "  Номер заказа:  где   он?  ") == path
    after = path.read_bytes()
    assert _inserted(before.decode(), after.decode()) == ['    - "Номер заказа: где он?"']
    assert after.decode().index('"Номер заказа: где он?"') < after.decode().index("# - a disabled alias")
    article = {a.id: a for a in load_articles(kb)}["order-number-help"]  # the loader ingest uses
    assert article.questions == ("Где номер заказа?", "Как узнать номер заказа", "Номер заказа: где он?")
    assert article.related == ("resend-certificate",) and article.title == "Где найти номер заказа"


def test_the_questions_list_is_created_when_missing(kb):
    path = kb / "certificate-validity.md"
    before = path.read_text(encoding="utf-8")
    add_alias(kb, "certificate-validity", "Сертификат сгорел, что делать?")
    after = path.read_text(encoding="utf-8")
    assert _inserted(before, after) == ["questions:", '  - "Сертификат сгорел, что делать?"']
    assert after.index("questions:") < after.index("\n---\n")  # inside the front matter
    assert read_article(kb, "certificate-validity")["questions"] == ["Сертификат сгорел, что делать?"]
    add_alias(kb, "certificate-validity", "Можно ли продлить сертификат")  # then appended to it
    assert read_article(kb, "certificate-validity")["questions"] == [
        "Сертификат сгорел, что делать?", "Можно ли продлить сертификат",
    ]


@pytest.mark.parametrize(
    "line, expected_line",
    [
        ("questions: [Где чек, 'Где мой чек']", 'questions: [Где чек, \'Где мой чек\', "Новый вопрос"]'),
        ("questions: []  # none yet", 'questions: ["Новый вопрос"]  # none yet'),
    ],
)
def test_a_one_line_list_gets_the_alias_inside(kb, line, expected_line):
    path = kb / "support-hours.md"
    path.write_text(path.read_text(encoding="utf-8").replace("related: []\n", f"related: []\n{line}\n"), encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    add_alias(kb, "support-hours", "Новый вопрос")
    assert path.read_text(encoding="utf-8") == before.replace(line, expected_line)
    assert read_article(kb, "support-hours")["questions"][-1] == "Новый вопрос"


def test_a_list_at_the_key_indentation_with_a_multi_line_item(kb):
    path = kb / "support-hours.md"
    block = "questions:\n- >-\n  Когда работает\n  поддержка?\n- Часы работы\n"
    path.write_text(path.read_text(encoding="utf-8").replace("related: []\n", f"{block}related: []\n"), encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    add_alias(kb, "support-hours", "Вы работаете ночью?")
    assert _inserted(before, path.read_text(encoding="utf-8")) == ['- "Вы работаете ночью?"']
    assert read_article(kb, "support-hours")["questions"] == [
        "Когда работает поддержка?", "Часы работы", "Вы работаете ночью?",
    ]


def test_a_questions_value_that_is_not_a_list_is_left_to_a_human(kb):
    path = kb / "support-hours.md"
    path.write_text(path.read_text(encoding="utf-8").replace("related: []\n", "questions: Когда?\nrelated: []\n"), encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(KbEditError, match="edit the file by hand"):
        add_alias(kb, "support-hours", "Вы работаете ночью?")
    assert path.read_bytes() == before


def test_an_empty_questions_key_becomes_a_list(kb):
    path = kb / "support-hours.md"
    path.write_text(path.read_text(encoding="utf-8").replace("related: []\n", "questions:\nrelated: []\n"), encoding="utf-8")
    add_alias(kb, "support-hours", "Когда отвечает оператор?")
    assert '---\nid: support-hours' in path.read_text(encoding="utf-8")
    assert read_article(kb, "support-hours")["questions"] == ["Когда отвечает оператор?"]
    assert read_article(kb, "support-hours")["related"] == []


def test_yaml_special_characters_are_quoted(kb):
    question = 'Что значит "код: DRM" # и [скобки], {фигурные} & \\ обратный слэш?'
    add_alias(kb, "check-balance", question)
    assert read_article(kb, "check-balance")["questions"] == [question]


@pytest.mark.parametrize(
    "question, message",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("а" * (MAX_QUESTION_CHARS + 1), f"longer than {MAX_QUESTION_CHARS}"),
        ("Где номер заказа?", "already a question alias"),
        ("  где   НОМЕР заказа?  ", "already a question alias"),  # case and spaces do not count
        ("мой заказ 40817263 где он", "personal data"),
        ("пин 1234 не подходит", "personal data"),
        ("код DRM-A7K2-9QXM-4TPB не работает", "personal data"),
        ("пишите на ivan.petrov@mail.ru", "personal data"),
        ("мой телефон +7 912 345-67-89", "personal data"),
    ],
)
def test_bad_aliases_are_refused_and_nothing_is_written(kb, question, message):
    path = kb / "order-number-help.md"
    before = path.read_bytes()
    with pytest.raises(KbEditError, match=message):
        add_alias(kb, "order-number-help", question)
    assert path.read_bytes() == before


def test_personal_data_is_never_echoed_in_the_refusal(kb):
    with pytest.raises(ValueError) as refused:  # KbEditError is a ValueError
        add_alias(kb, "check-balance", "пишите на ivan.petrov@mail.ru или +7 912 345-67-89")
    assert "ivan.petrov" not in str(refused.value) and "345-67" not in str(refused.value)


def test_a_question_of_exactly_the_limit_is_accepted(kb):
    question = "а" * (MAX_QUESTION_CHARS - 1) + "?"
    add_alias(kb, "check-balance", question)
    assert read_article(kb, "check-balance")["questions"] == [question]


def test_an_unknown_article_is_refused(kb):
    with pytest.raises(KbEditError, match="unknown article 'no-such-article'"):
        add_alias(kb, "no-such-article", "Как дела?")
    with pytest.raises(KbEditError, match="unknown article"):
        add_alias(kb, "../kb/check-balance", "Как дела?")


def test_articles_are_found_by_front_matter_id_and_a_broken_neighbour_does_not_block(kb):
    (kb / "check-balance.md").rename(kb / "balance.md")  # the file name is not the id
    (kb / "broken.md").write_text("no front matter\n", encoding="utf-8")
    path = add_alias(kb, "check-balance", "Сколько осталось на сертификате?")
    assert path == kb / "balance.md"
    assert read_article(kb, "check-balance")["path"] == kb / "balance.md"


def test_a_broken_article_itself_is_reported(kb):
    (kb / "support-hours.md").write_text("---\nid: support-hours\n---\nbody\n", encoding="utf-8")
    with pytest.raises(KbEditError, match="cannot be read: .*`id` and `title`"):
        add_alias(kb, "support-hours", "Когда вы работаете?")


def test_concurrent_aliases_are_all_kept(kb):
    questions = [f"Вопрос номер {chr(ord('а') + n)}?" for n in range(16)]
    with_errors: List[Exception] = []

    def add(question: str) -> None:
        try:
            add_alias(kb, "refund-conditions", question)
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            with_errors.append(error)

    threads = [threading.Thread(target=add, args=(q,)) for q in questions + questions[:4]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(read_article(kb, "refund-conditions")["questions"]) == sorted(questions)  # no lost update
    assert len(with_errors) == 4 and all("already a question alias" in str(e) for e in with_errors)
    assert _no_temp_files(kb)


def test_a_writer_of_another_process_is_waited_for(kb):
    descriptor = os.open(kb, os.O_RDONLY)  # flock conflicts between open descriptions, as between processes
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    worker = threading.Thread(target=add_alias, args=(kb, "check-balance", "Где баланс?"))
    try:
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and read_article(kb, "check-balance")["questions"] == []
    finally:
        os.close(descriptor)  # releases the lock
    worker.join(10)
    assert read_article(kb, "check-balance")["questions"] == ["Где баланс?"]


# --- atomic writes -----------------------------------------------------------------------------

def test_a_failing_rename_leaves_the_file_untouched(kb, monkeypatch):
    path = kb / "order-number-help.md"
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        add_alias(kb, "order-number-help", "Где номер заказа в письме?")
    assert path.read_bytes() == before and _no_temp_files(kb)


def test_a_failure_while_writing_leaves_the_file_untouched(kb, monkeypatch):
    path = kb / "support-hours.md"
    before = path.read_bytes()

    def fail(descriptor):
        raise OSError("I/O error")

    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(OSError, match="I/O error"):
        replace_body(kb, "support-hours", "Сотрудники работают с 8:00 до 22:00.")
    with pytest.raises(OSError, match="I/O error"):
        create_article(kb, "new-article", "Заголовок", "Текст.")
    assert path.read_bytes() == before and not (kb / "new-article.md").exists() and _no_temp_files(kb)


def test_a_rewritten_file_keeps_its_permissions(kb):
    path = kb / "support-hours.md"
    path.chmod(0o664)
    add_alias(kb, "support-hours", "Во сколько открывается поддержка?")
    assert path.stat().st_mode & 0o777 == 0o664


# --- create_article ----------------------------------------------------------------------------

def test_a_new_article_has_a_front_matter_like_the_others(kb):
    path = create_article(
        kb, "receipt", "Где найти чек об оплате",
        "Чек приходит на e-mail сразу после оплаты.\r\n\r\n## Если чека нет\nНапишите ассистенту.\n\n",
        questions=["Где мой чек?", " Не пришёл   чек "], tags=["чек", "оплата"],
    )
    assert path == kb / "receipt.md"
    assert path.read_text(encoding="utf-8") == (
        "---\nid: receipt\ntitle: Где найти чек об оплате\ntags: [чек, оплата]\nrelated: []\n"
        'questions:\n  - "Где мой чек?"\n  - "Не пришёл чек"\n---\n'
        "Чек приходит на e-mail сразу после оплаты.\n\n## Если чека нет\nНапишите ассистенту.\n"
    )
    assert path.stat().st_mode & 0o777 == 0o644
    article = {a.id: a for a in load_articles(kb)}["receipt"]
    assert article.questions == ("Где мой чек?", "Не пришёл чек") and article.tags == ("чек", "оплата")
    assert read_article(kb, "receipt") == {
        "id": "receipt", "title": "Где найти чек об оплате", "questions": ["Где мой чек?", "Не пришёл чек"],
        "tags": ["чек", "оплата"], "related": [],
        "body": "Чек приходит на e-mail сразу после оплаты.\n\n## Если чека нет\nНапишите ассистенту.", "path": path,
    }


def test_titles_and_tags_that_need_quotes_get_them(kb):
    create_article(kb, "odd-title", "Вопрос: «да» или нет?", "Текст.", tags=["a, b", "yes", "123", "#хэштег"])
    article = parse_article((kb / "odd-title.md").read_text(encoding="utf-8"))
    assert article.title == "Вопрос: «да» или нет?" and article.tags == ("a, b", "yes", "123", "#хэштег")


def test_a_format_placeholder_is_not_personal_data(kb):
    create_article(kb, "code-format", "Как выглядит код", "Код выглядит так: `DRM-XXXX-XXXX-XXXX`.")
    assert "DRM-XXXX-XXXX-XXXX" in read_article(kb, "code-format")["body"]


@pytest.mark.parametrize("article_id", ["ab", "Check-Balance", "with space", "a" * 65, "../evil", "статья", "x_y"])
def test_bad_ids_are_refused(kb, article_id):
    with pytest.raises(KbEditError, match="article id must be 3-64 characters"):
        create_article(kb, article_id, "Заголовок", "Текст.")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"article_id": "check-balance"}, "already exists"),
        ({"title": "  "}, "title is empty"),
        ({"body": "\n \n"}, "body is empty"),
        ({"title": "Заказ 40817263"}, "the title contains personal data"),
        ({"body": "Звоните Ивану: +7 912 345-67-89."}, "the body contains personal data"),
        ({"questions": ["Мой пин 1234 не работает"]}, "the question contains personal data"),
        ({"tags": ["ivan@mail.ru"]}, "a tag contains personal data"),
        ({"article_id": "order-40817263"}, "the article id contains personal data"),
        ({"questions": ["Где чек?", "где  ЧЕК?"]}, "given twice"),
        ({"questions": [""]}, "question is empty"),
        ({"tags": [" "]}, "a tag is empty"),
    ],
)
def test_bad_articles_are_refused(kb, changes, message):
    before = sorted(p.name for p in kb.iterdir())
    arguments = {"article_id": "new-article", "title": "Заголовок", "body": "Текст."} | changes
    with pytest.raises(KbEditError, match=message):
        create_article(kb, **arguments)
    assert sorted(p.name for p in kb.iterdir()) == before


def test_an_id_taken_by_another_file_is_refused(kb):
    (kb / "support-hours.md").rename(kb / "hours.md")
    with pytest.raises(KbEditError, match="already exists: .*hours.md"):
        create_article(kb, "support-hours", "Заголовок", "Текст.")


# --- read_article / replace_body ---------------------------------------------------------------

def test_read_article(kb):
    article = read_article(kb, "order-number-help")
    assert article["id"] == "order-number-help" and article["path"] == kb / "order-number-help.md"
    assert article["questions"] == ["Где номер заказа?", "Как узнать номер заказа"]
    assert article["body"].startswith("Номер заказа — это 8 цифр")
    with pytest.raises(KbEditError, match="unknown article"):
        read_article(kb, "nothing-here")


def test_a_corrected_body_keeps_the_front_matter_byte_for_byte(kb):
    path = kb / "order-number-help.md"
    before = path.read_text(encoding="utf-8")
    front_matter = before[: before.index("\n---\n") + len("\n---\n")]
    # the article's own example number stays allowed: it is published already
    body = "Номер заказа — это 8 цифр, например `40817263`.\n\n## Где его найти\nВ письме о заказе и в чеке."
    assert replace_body(kb, "order-number-help", body) == path
    after = path.read_text(encoding="utf-8")
    assert after == front_matter + "\n" + body  # the blank line after the front matter, no final newline: as before
    assert read_article(kb, "order-number-help")["body"] == body
    assert read_article(kb, "order-number-help")["questions"] == ["Где номер заказа?", "Как узнать номер заказа"]


def test_an_unchanged_body_is_not_rewritten(kb):
    path = kb / "support-hours.md"
    mtime = path.stat().st_mtime_ns
    replace_body(kb, "support-hours", read_article(kb, "support-hours")["body"])
    assert path.stat().st_mtime_ns == mtime  # no needless re-ingest by the services


@pytest.mark.parametrize(
    "body, message",
    [
        ("  ", "body is empty"),
        ("Номер заказа, например `12345678`.", "personal data"),  # not the article's own example
        ("Пишите на support.person@mail.ru.", "personal data"),
    ],
)
def test_bad_corrections_are_refused(kb, body, message):
    path = kb / "order-number-help.md"
    before = path.read_bytes()
    with pytest.raises(KbEditError, match=message):
        replace_body(kb, "order-number-help", body)
    assert path.read_bytes() == before
    with pytest.raises(KbEditError, match="unknown article"):
        replace_body(kb, "no-such-article", "Текст.")


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(KbEditError, match="directory not found"):
        add_alias(tmp_path / "missing", "check-balance", "Где баланс?")
    with pytest.raises(KbEditError, match="directory not found"):
        create_article(tmp_path / "missing", "new-article", "Заголовок", "Текст.")
