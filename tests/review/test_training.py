"""review.training: reviewed examples written as Rasa NLU data under data/nlu/reviewed/, in a
scratch copy of the project — round trips, every refusal leaving the files as they were, personal
data refused without repeating it, files Rasa loads and validates, no lost write under concurrency."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict

import pytest
from rasa.shared.nlu.training_data.loading import load_data

from review import training as training_module
from review.training import MAX_TEXT_CHARS, ReviewedData, ReviewRefused, normalise

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path) -> Path:
    """The files the review tool reads, copied: domain, config, NLU data, the held-out sets."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "tests" / "data").mkdir(parents=True)
    for name in ("domain.yml", "config.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "data" / "nlu", root / "data" / "nlu", ignore=shutil.ignore_patterns("reviewed"))
    shutil.copytree(ROOT / "data" / "calibration", root / "data" / "calibration")
    for name in ("nlu_heldout.yml", "out_of_scope_heldout.txt"):
        shutil.copy(ROOT / "tests" / "data" / name, root / "tests" / "data" / name)
    return root


@pytest.fixture
def data(project) -> ReviewedData:
    return ReviewedData(project)


def snapshot(root: Path) -> Dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted((root / "data").rglob("*")) if path.is_file()}


def loaded(path: Path):
    return [(m.get("text"), m.get("intent"), [(e["entity"], e["value"], e["start"], e["end"]) for e in m.get("entities") or []])
            for m in load_data(str(path)).intent_examples]


# --- round trips -----------------------------------------------------------------------------------

def test_an_example_round_trips_through_a_rasa_nlu_file(data, project):
    text = "где   мой подарок в Спортмастер, уже неделю жду"
    start = text.index("Спортмастер")
    added = data.add(text, "complaint", entities=[{"entity": "brand", "value": "Спортмастер",
                                                   "start": start, "end": start + len("Спортмастер")}],
                     reviewer="anna")
    path = project / "data" / "nlu" / "reviewed" / "complaint.yml"
    assert added.path == path and added.intent == "complaint" and added.reviewer == "anna"
    # spaces collapsed, the entity's offsets moved with the text
    assert added.text == "где мой подарок в Спортмастер, уже неделю жду"
    assert added.entities == ({"entity": "brand", "value": "Спортмастер", "start": 18, "end": 29},)
    content = path.read_text(encoding="utf-8")
    assert 'version: "3.1"' in content and "- intent: complaint" in content and "  examples: |" in content
    assert "    - где мой подарок в [Спортмастер](brand), уже неделю жду" in content
    assert loaded(path) == [(added.text, "complaint", [("brand", "Спортмастер", 18, 29)])]

    second = data.add("бабки назад верните", "refund_request")
    third = data.add("и еще верните бабки за второй", "refund_request")
    assert loaded(second.path) == [(second.text, "refund_request", []), (third.text, "refund_request", [])]
    assert [(e.text, e.intent) for e in data.reviewed()] == [
        (added.text, "complaint"), (second.text, "refund_request"), (third.text, "refund_request")]
    assert [e.text for e in data.reviewed("refund_request")] == [second.text, third.text]
    # the whole data folder still loads, the reviewed examples in it
    everything = {m.get("text") for m in load_data(str(project / "data" / "nlu")).intent_examples}
    assert {added.text, second.text, third.text} <= everything

    # undo: matched normalised; the last example of an intent takes its file with it
    assert data.remove("БАБКИ назад  верните!").text == second.text
    assert loaded(second.path) == [(third.text, "refund_request", [])]
    assert data.remove(added.text).intent == "complaint"
    assert not path.exists()
    assert data.remove("никогда не добавлялось") is None
    assert [e.text for e in data.reviewed()] == [third.text]
    # an example taken back can be added again, under another intent too
    assert data.add(added.text, "knowledge_question").intent == "knowledge_question"
    assert not [p for p in (project / "data" / "nlu" / "reviewed").iterdir() if p.name.startswith(".")]


def test_out_of_scope_is_an_intent_like_the_others(data):
    added = data.add("какой курс биткоина сегодня", "out_of_scope")
    assert added.path.name == "out_of_scope.yml"
    assert loaded(added.path) == [("какой курс биткоина сегодня", "out_of_scope", [])]


def test_the_choices_are_the_domain_intents_and_entities_that_nlu_data_uses(data):
    intents = data.intents()
    assert intents == sorted(intents)
    assert {"greet", "refund_request", "out_of_scope", "inform"} <= set(intents)
    # nlu_fallback is the NLU's verdict, feedback_* are button-only intents (no NLU examples)
    assert "nlu_fallback" not in intents and not [i for i in intents if i.startswith("feedback_")]
    assert data.entity_names() == ["brand", "certificate_code", "email", "inn", "order_id", "phone"]


# --- refusals --------------------------------------------------------------------------------------

REFUSALS = [
    ("", "greet", None, "empty"),
    ("  \n ", "greet", None, "empty"),
    ("?!", "greet", None, "empty"),
    ("а" * (MAX_TEXT_CHARS + 1), "complaint", None, "too_long"),
    ("непонятная штука", "nlu_fallback", None, "unknown_intent"),
    ("непонятная штука", "no_such_intent", None, "unknown_intent"),
    ("всё решилось, спасибо", "feedback_resolved", None, "unknown_intent"),
    ("/greet", "greet", None, "invalid"),
    ("заказ [12](order_id) где", "complaint", None, "invalid"),
    ("хочу в Ленту", "complaint", [{"entity": "shop", "value": "Ленту", "start": 7, "end": 12}], "invalid_entity"),
    ("хочу в Ленту", "complaint", [{"entity": "kb_article", "value": "Ленту", "start": 7, "end": 12}], "invalid_entity"),
    ("хочу в Ленту", "complaint", [{"entity": "brand", "value": "Лента", "start": 7, "end": 12}], "invalid_entity"),
    ("хочу в Ленту", "complaint", [{"entity": "brand", "value": "Ленту", "start": 7, "end": 40}], "invalid_entity"),
    ("хочу в Ленту", "complaint", [{"entity": "brand", "value": " Ленту", "start": 6, "end": 12}], "invalid_entity"),
    ("хочу в Ленту", "complaint", [{"entity": "brand", "start": 7, "end": 12},
                                   {"entity": "brand", "start": 9, "end": 11}], "invalid_entity"),
    ("Привет!!", "greet", None, "duplicate"),             # data/nlu/greet.yml: «привет»
    ("Хай  всем!", "greet", None, "heldout"),             # tests/data/nlu_heldout.yml: «хай всем»
    ("Какая погода завтра в Москве?", "out_of_scope", None, "heldout"),  # out_of_scope_heldout.txt
    ("кто забил больше всех голов в истории сборной России", "out_of_scope", None, "heldout"),  # calibration
]


@pytest.mark.parametrize("text,intent,entities,code", REFUSALS)
def test_a_refusal_says_why_and_writes_nothing(data, project, text, intent, entities, code):
    data.add("уже есть один отзыв", "complaint")  # the reviewed folder exists and has a file
    before = snapshot(project)
    with pytest.raises(ReviewRefused) as refused:
        data.add(text, intent, entities=entities)
    assert refused.value.code == code, str(refused.value)
    assert isinstance(refused.value, ValueError) and str(refused.value)
    assert snapshot(project) == before


def test_the_same_wording_twice_is_a_duplicate_and_under_another_intent_a_conflict(data, project):
    data.add("бабки назад верните", "refund_request")
    before = snapshot(project)
    with pytest.raises(ReviewRefused) as duplicate:
        data.add("Бабки назад, верните!", "refund_request")
    with pytest.raises(ReviewRefused) as conflict:
        data.add("бабки  назад верните", "complaint")
    assert (duplicate.value.code, conflict.value.code) == ("duplicate", "conflict")
    assert "refund_request" in str(conflict.value)
    # «ё» and «е» are the same letter for a duplicate: data/nlu has «ещё раз спасибо»-style texts
    thank_text = next(m.get("text") for m in load_data(str(project / "data/nlu/thank.yml")).intent_examples
                      if "ё" in m.get("text"))
    with pytest.raises(ReviewRefused) as training_duplicate:
        data.add(thank_text.upper().replace("Ё", "Е") + "...", "complaint")
    assert training_duplicate.value.code == "duplicate" and "thank" in str(training_duplicate.value)
    assert snapshot(project) == before


PERSONAL = [
    ("мой код DRM-7Q2K-AB3C-X9P1 не работает", "7Q2K-AB3C-X9P1"),
    ("пин 4821 не подходит", "4821"),
    ("мой пин-код от сертификата 4821 не принимают", "4821"),
    ("пришлите на ivan.petrov@mail.ru пожалуйста", "ivan.petrov"),
    ("перезвоните мне +7 916 123-45-67", "123-45"),
    ("заказ 40817263 так и не пришел", "40817263"),
    ("счет на ИНН 7707083893 выставьте", "7707083893"),
]


@pytest.mark.parametrize("text,raw", PERSONAL)
def test_personal_data_is_refused_without_repeating_it(data, project, text, raw):
    before = snapshot(project)
    with pytest.raises(ReviewRefused) as refused:
        data.add(text, "complaint")
    assert refused.value.code == "personal_data"
    assert raw not in str(refused.value) and raw not in repr(refused.value)
    assert snapshot(project) == before


@pytest.mark.parametrize("text", [
    "код DRM-****-****-X9P1 не работает",   # what the event stream and the inbox show
    "пришлите на i***@mail.ru",
    "позвоните +7 *** ***-**-67",
    "мой пин ****",
    "сертификат вида DRM-XXXX-XXXX-XXXX не принимают",  # a format placeholder is masked too
])
def test_masked_leftovers_are_not_trained_on_either(data, project, text):
    before = snapshot(project)
    with pytest.raises(ReviewRefused) as refused:
        data.add(text, "complaint")
    assert refused.value.code == "personal_data"
    assert snapshot(project) == before


def test_a_file_that_does_not_load_back_is_restored(data, project, monkeypatch):
    first = data.add("бабки назад верните", "refund_request")
    before = first.path.read_bytes()
    real = training_module._load_examples
    # Rasa's loader reading back something else than was written (a disk or reader fault)
    monkeypatch.setattr(training_module, "_load_examples",
                        lambda path: real(path)[:-1] if "/nlu/reviewed/" in str(path) else real(path))
    with pytest.raises(ReviewRefused) as refused:
        data.add("отдайте мои бабки", "refund_request")
    assert refused.value.code == "invalid" and "restored" in str(refused.value)
    assert first.path.read_bytes() == before
    with pytest.raises(ReviewRefused):
        data.add("какой курс биткоина сегодня", "out_of_scope")  # a new file: removed again
    assert not (project / "data/nlu/reviewed/out_of_scope.yml").exists()


def test_a_broken_reviewed_file_is_reported_not_overwritten(data, project):
    path = data.add("бабки назад верните", "refund_request").path
    path.write_text("version: \"3.1\"\nnlu:\n- intent: refund_request\n  examples: [не, список\n", encoding="utf-8")
    before = snapshot(project)
    with pytest.raises(ReviewRefused) as refused:
        data.add("отдайте мои бабки", "refund_request")
    assert refused.value.code == "broken_data" and "refund_request.yml" in str(refused.value)
    assert snapshot(project) == before


def test_a_hand_edited_file_with_another_intent_is_not_relabelled(data, project):
    path = data.add("бабки назад верните", "refund_request").path
    path.write_text(path.read_text(encoding="utf-8") + "- intent: complaint\n  examples: |\n    - безобразие какое\n",
                    encoding="utf-8")
    before = snapshot(project)
    for write in (lambda: data.add("отдайте мои бабки", "refund_request"), lambda: data.remove("бабки назад верните")):
        with pytest.raises(ReviewRefused) as refused:
            write()
        assert refused.value.code == "broken_data" and "complaint" in str(refused.value)
    assert snapshot(project) == before


# --- Rasa's own checks -----------------------------------------------------------------------------

def test_rasa_data_validate_accepts_the_reviewed_data(data, project):
    data.add("бабки назад верните", "refund_request")
    text = "подарок в Спортмастер не приняли"
    data.add(text, "certificate_not_accepted",
             entities=[{"entity": "brand", "value": "Спортмастер", "start": 10, "end": 21}])
    data.add("какой курс биткоина сегодня", "out_of_scope")
    shutil.copytree(ROOT / "scenarios", project / "scenarios")  # the stories the domain's actions serve
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", RASA_TELEMETRY_ENABLED="false")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("rasa")), "data", "validate",
         "--data", str(project / "data"), "--domain", str(project / "domain.yml")],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.validator import Validator

    importer = TrainingDataImporter.load_from_dict(
        domain_path=str(project / "domain.yml"), training_data_paths=[str(project / "data")])
    validator = Validator.from_importer(importer)
    # the reviewed examples repeat no example of another intent, and use the domain's intents only
    assert validator.verify_example_repetition_in_intents(ignore_warnings=False)
    nlu_intents = {m.get("intent") for m in validator.intents.intent_examples}
    assert nlu_intents <= set(validator.domain.intents)
    assert text in {m.get("text") for m in validator.intents.intent_examples}


# --- concurrency -----------------------------------------------------------------------------------

def test_twenty_concurrent_writers_lose_nothing(project):
    # two objects, as two console workers would have: the lock is per folder, not per object
    writers = [ReviewedData(project), ReviewedData(project)]
    texts = [f"отзыв номер {word} про подарок" for word in (
        "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять", "десять",
        "одиннадцать", "двенадцать", "тринадцать", "четырнадцать", "пятнадцать", "шестнадцать",
        "семнадцать", "восемнадцать", "девятнадцать", "двадцать")]
    intents = ["complaint", "knowledge_question"]
    errors = []
    barrier = threading.Barrier(len(texts))

    def write(index: int) -> None:
        try:
            barrier.wait()
            writers[index % 2].add(texts[index], intents[index % 2])
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    folder = project / "data" / "nlu" / "reviewed"
    on_disk = [text for path in sorted(folder.glob("*.yml")) for text, _, _ in loaded(path)]
    assert sorted(on_disk) == sorted(texts)
    assert {e.intent for e in ReviewedData(project).reviewed() if e.text == texts[1]} == {"knowledge_question"}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_writer_in_another_process_holds_the_folder_lock(data, project):
    data.add("уже есть один отзыв", "complaint")
    folder = project / "data" / "nlu" / "reviewed"
    holder = os.open(folder, os.O_RDONLY)  # another open file description: what another process holds
    fcntl.flock(holder, fcntl.LOCK_EX)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (data.add("бабки назад верните", "refund_request"), done.set()))
    thread.start()
    try:
        time.sleep(1.0)
        assert not done.is_set() and not (folder / "refund_request.yml").exists()
    finally:
        os.close(holder)
    thread.join(30)
    assert done.is_set() and loaded(folder / "refund_request.yml") == [("бабки назад верните", "refund_request", [])]


def test_normalise_ignores_case_spaces_punctuation_and_yo():
    assert normalise("  Ещё  раз СПАСИБО!!! ") == normalise("еще раз спасибо") == "еще раз спасибо"
    assert normalise("Бабки назад, верните!") == normalise("бабки назад верните")
    assert normalise("👍") == "👍" != normalise("👎")  # symbols only: kept, or every emoji is one text


def test_an_emoji_is_a_text_but_punctuation_alone_is_not(data):
    assert data.add("👍👍", "affirm").text == "👍👍"
    with pytest.raises(ReviewRefused) as refused:
        data.add(" ?! ", "affirm")
    assert refused.value.code == "empty"
