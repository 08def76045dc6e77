"""Editing the knowledge-base folder safely, for the trainer's review tool.

The edits a trainer makes from a reviewed miss — a question the assistant should have answered
becomes a *question alias* of the right article, a missing answer becomes a new article, a wrong
one a corrected body:

``add_alias(kb_dir, article_id, question)``   appends to the front matter's ``questions:`` list
                                              (created when missing); nothing else in the file
                                              changes, byte for byte — formatting, comments, body;
``create_article(kb_dir, article_id, title, body, questions=(), tags=())``  a new ``<id>.md``;
``read_article(kb_dir, article_id)``          id, title, questions, tags, related, body, path;
``replace_body(kb_dir, article_id, body)``    a correction: the front matter stays as it is.

Every edit is refused with a ``KbEditError`` (a ``ValueError``) saying why — an unknown or
existing article, an empty or over-long text, a duplicate alias, personal data — and the new text
must parse with ``rag.documents.parse_article`` (the loader ingest uses) with exactly the intended
change, otherwise nothing is written. Personal data is what ``rag.privacy.mask_pii`` (with the
assistant's entity patterns from ``config.yml``) would mask, except format placeholders whose
masked characters are all ``X`` or ``*`` (``DRM-XXXX-XXXX-XXXX``) and, in ``replace_body``,
entity values the article already contains (its published examples, such as a sample code).

Writes are atomic (a temporary ``.<name>.<random>.tmp`` file in the folder, fsync, ``os.replace``:
the service that follows the folder never reads half a file, and the temporary name is not an
``*.md`` it would load) and one at a time (a thread lock plus ``flock`` on the folder, for review
tools running in several processes). The running services pick the change up within
``kb_check_seconds`` (``rag.service``).
"""
from __future__ import annotations

import contextlib
import difflib
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from engine.settings import PROJECT_ROOT
from nlu.entity_patterns import find_entities
# the loader's own front-matter boundaries, so that "the front matter" means the same thing here
from rag.documents import _FRONT_MATTER_RE, Article, KnowledgeBaseError, parse_article
from rag.privacy import entity_specs, mask_pii
from rag.text import normalise
from review.files import folder_lock, write_atomic

MAX_QUESTION_CHARS = 300
ARTICLE_ID_RE = re.compile(r"[a-z0-9-]{3,64}")
_QUESTIONS_KEY_RE = re.compile(r"^questions[ \t]*:(?P<rest>.*)$")
_ITEM_PREFIX_RE = re.compile(r"^([ \t]*-[ \t]+)")
_NULL_VALUES = ("", "~", "null", "Null", "NULL")
_PLACEHOLDER_CHARS = frozenset("Xx*")


class KbEditError(ValueError):
    """An edit of the knowledge base was refused (the message says why); nothing was written."""


# --- public API ------------------------------------------------------------------------------

def read_article(kb_dir: Path, article_id: str) -> Dict[str, Any]:
    """``{"id", "title", "questions", "tags", "related", "body", "path"}`` of an article."""
    path, _, article = _find(Path(kb_dir), article_id)
    return {
        "id": article.id,
        "title": article.title,
        "questions": list(article.questions),
        "tags": list(article.tags),
        "related": list(article.related),
        "body": article.body,
        "path": path,
    }


def add_alias(kb_dir: Path, article_id: str, question: str) -> Path:
    """Appends ``question`` to the article's ``questions:``; returns the article's path."""
    question = _check_question(question)
    kb_dir = Path(kb_dir)
    with _writing(kb_dir):
        path, text, article = _find(kb_dir, article_id)
        if normalise(question) in {normalise(existing) for existing in article.questions}:
            raise KbEditError(f"«{question}» is already a question alias of '{article.id}'")
        new_text = _with_alias(text, question, path)
        # the loader must see exactly one more alias and nothing else changed
        _expect(new_text, path, article, questions=article.questions + (question,))
        write_atomic(path, new_text)
    return path


def create_article(
    kb_dir: Path,
    article_id: str,
    title: str,
    body: str,
    questions: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> Path:
    """Writes a new ``<kb_dir>/<article_id>.md``; returns its path."""
    kb_dir = Path(kb_dir)
    article_id = str(article_id or "").strip()
    if not ARTICLE_ID_RE.fullmatch(article_id):
        raise KbEditError(f"article id must be 3-64 characters of a-z, 0-9 and '-', got {article_id!r}")
    _check_personal_data("the article id", article_id.replace("-", " "))  # «order-40817263» hides a number
    title = " ".join(str(title or "").split())
    if not title:
        raise KbEditError("the title is empty")
    _check_personal_data("the title", title)
    body = _clean_body(body)
    _check_personal_data("the body", body)
    checked_questions: List[str] = []
    for question in questions:
        question = _check_question(question)
        if normalise(question) in {normalise(q) for q in checked_questions}:
            raise KbEditError(f"«{question}» is given twice as a question")
        checked_questions.append(question)
    checked_tags: List[str] = []
    for tag in tags:
        tag = " ".join(str(tag or "").split())
        if not tag:
            raise KbEditError("a tag is empty")
        _check_personal_data("a tag", tag)
        if tag not in checked_tags:
            checked_tags.append(tag)

    text = _article_text(article_id, title, body, checked_questions, checked_tags)
    path = kb_dir / f"{article_id}.md"
    with _writing(kb_dir):
        existing = path if path.exists() else _path_of(kb_dir, article_id)
        if existing is not None:
            raise KbEditError(f"article '{article_id}' already exists: {existing}")
        _expect(
            text, path, None, id=article_id, title=title, body=body,
            questions=tuple(checked_questions), tags=tuple(checked_tags), related=(),
        )
        write_atomic(path, text)
    return path


def replace_body(kb_dir: Path, article_id: str, body: str) -> Path:
    """Replaces the article's text after the front matter (kept byte for byte); returns its path."""
    body = _clean_body(body)
    kb_dir = Path(kb_dir)
    with _writing(kb_dir):
        path, text, article = _find(kb_dir, article_id)
        # values the article already publishes (a sample code, an example order number) stay allowed
        _check_personal_data("the body", body, published=text)
        start, match = _front_matter(text, path)
        rest = text[start + match.end():]
        lead = rest[: len(rest) - len(rest.lstrip())]  # blank lines kept as they were
        tail = rest[len(rest.rstrip()):] if rest.strip() else "\n"  # the final newline (or none) as it was
        new_text = text[: start + match.end()] + lead + body + tail
        if new_text == text:
            return path  # unchanged: no write, no re-ingest
        _expect(new_text, path, article, body=body)
        write_atomic(path, new_text)
    return path


# --- checks ----------------------------------------------------------------------------------

def _check_question(question: str) -> str:
    question = " ".join(str(question or "").split())
    if not question:
        raise KbEditError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise KbEditError(f"the question is longer than {MAX_QUESTION_CHARS} characters ({len(question)})")
    _check_personal_data("the question", question)
    return question


def _clean_body(body: str) -> str:
    body = str(body or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise KbEditError("the body is empty")
    return body


def _check_personal_data(what: str, text: str, published: str = "") -> None:
    """Refuses ``text`` when ``mask_pii`` would change it (placeholders and ``published`` values aside)."""
    specs = entity_specs(PROJECT_ROOT / "config.yml")
    if published:
        for match in find_entities(published, specs):
            text = text.replace(match.text, " ")
    masked = mask_pii(text, specs)
    if masked == text:
        return
    matcher = difflib.SequenceMatcher(None, text, masked, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        # DRM-XXXX-XXXX-XXXX describes a format: masking it only turns X into *
        if tag == "equal" or (i2 > i1 and set(text[i1:i2]) <= _PLACEHOLDER_CHARS):
            continue
        # the masked form only: the message may end up in a log
        context = masked[max(0, j1 - 30): j2 + 30].strip()
        raise KbEditError(f"{what} contains personal data («…{context}…» once masked); remove it")


def _expect(text: str, path: Path, before: Optional[Article], **fields: Any) -> Article:
    """``text`` parsed by the KB loader: refuses it unless it is ``before`` with ``fields`` changed."""
    try:
        article = parse_article(text, path)
    except KnowledgeBaseError as error:
        raise KbEditError(f"the edited article would not load: {error}") from error
    wanted = dict(fields)
    if before is not None:
        for name in ("id", "title", "body", "tags", "related", "questions"):
            wanted.setdefault(name, getattr(before, name))
    for name, value in wanted.items():
        if getattr(article, name) != value:
            raise KbEditError(
                f"{path}: the edit would change `{name}` unexpectedly (an unusual front matter?); edit the file by hand"
            )
    return article


# --- finding and reading ---------------------------------------------------------------------

def _read(path: Path) -> str:
    try:
        # bytes, not text mode: line endings stay exactly as they are
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise KbEditError(f"{path} is not UTF-8: {error}") from error


def _article_files(kb_dir: Path) -> List[Path]:
    if not kb_dir.is_dir():
        raise KbEditError(f"knowledge base directory not found: {kb_dir}")
    return [path for path in sorted(kb_dir.glob("*.md")) if path.name.lower() != "readme.md"]


def _find(kb_dir: Path, article_id: str) -> Tuple[Path, str, Article]:
    """(path, text, article) of ``article_id``: ``<id>.md`` first, else the file whose front matter
    has that id. Other broken files are skipped (they must not block fixing this one)."""
    article_id = str(article_id or "").strip()
    files = _article_files(kb_dir)
    direct = kb_dir / f"{article_id}.md"
    if ARTICLE_ID_RE.fullmatch(article_id) and direct in files:  # the regex keeps "../x" out
        text = _read(direct)
        try:
            article = parse_article(text, direct)
        except KnowledgeBaseError as error:
            raise KbEditError(f"article '{article_id}' cannot be read: {error}") from error
        if article.id == article_id:
            return direct, text, article
    for path in files:
        if path == direct:
            continue
        try:
            text = _read(path)
            article = parse_article(text, path)
        except (KnowledgeBaseError, KbEditError):
            continue
        if article.id == article_id:
            return path, text, article
    raise KbEditError(f"unknown article '{article_id}' in {kb_dir}")


def _path_of(kb_dir: Path, article_id: str) -> Optional[Path]:
    try:
        return _find(kb_dir, article_id)[0]
    except KbEditError:
        return None


def _front_matter(text: str, path: Path) -> Tuple[int, "re.Match[str]"]:
    """(where the match's offsets start in ``text`` — 1 after a BOM, the front matter's match)."""
    start = 1 if text.startswith("\ufeff") else 0
    match = _FRONT_MATTER_RE.match(text[start:])
    if match is None:
        raise KbEditError(f"{path}: no YAML front matter (--- ... ---) at the top")
    return start, match


# --- writing the front matter ----------------------------------------------------------------

def _yaml_string(value: str, flow: bool = False) -> str:
    """``value`` as a YAML scalar: plain when it reads back the same, else double-quoted."""
    from ruamel.yaml import YAML

    source = f"k: [{value}]" if flow else f"k: {value}"
    try:
        loaded = YAML(typ="safe").load(source)
    except Exception:  # ruamel raises several unrelated types
        loaded = None
    if loaded == {"k": [value] if flow else value}:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def _with_alias(text: str, question: str, path: Path) -> str:
    """``text`` with ``question`` appended to ``questions:``: one line inserted (or the key and its
    first item added at the end of the front matter); a one-line ``[...]`` list gets it inside."""
    start, match = _front_matter(text, path)
    meta_start, meta_end = start + match.start(1), start + match.end(1)
    lines = text[meta_start:meta_end].split("\n")
    item = json.dumps(question, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    key = next((number for number, line in enumerate(lines) if _QUESTIONS_KEY_RE.match(line)), None)
    if key is None:
        lines.extend(["questions:", f"  - {item}"])
        return text[:meta_start] + "\n".join(lines) + text[meta_end:]
    head = _QUESTIONS_KEY_RE.match(lines[key]).group("rest").strip()
    if head.startswith("["):  # a one-line flow list
        line = lines[key]
        close = line.rindex("]")
        separator = ", " if line[line.index("[") + 1: close].strip() else ""
        lines[key] = f"{line[:close]}{separator}{item}{line[close:]}"
    elif head.split("#", 1)[0].strip() in _NULL_VALUES:  # a block list, maybe still empty
        if head.split("#", 1)[0].strip():
            lines[key] = "questions:"  # `questions: ~` would stay null with items under it
        last, prefix = key, None
        for number in range(key + 1, len(lines)):
            line = lines[number]
            stripped = line.strip()
            if stripped and not line[:1].isspace() and not line.startswith(("-", "#")):
                break  # the next top-level key
            if stripped and not stripped.startswith("#"):
                last = number  # after the last item (a multi-line item included), before comments
                item_prefix = _ITEM_PREFIX_RE.match(line)
                if prefix is None and item_prefix:
                    prefix = item_prefix.group(1)
        lines.insert(last + 1, f"{prefix or '  - '}{item}")
    else:
        raise KbEditError(f"{path}: `questions:` is neither a list nor empty; edit the file by hand")
    return text[:meta_start] + "\n".join(lines) + text[meta_end:]


def _article_text(article_id: str, title: str, body: str, questions: Sequence[str], tags: Sequence[str]) -> str:
    """A new article in the layout of the existing ones."""
    lines = [
        "---",
        f"id: {article_id}",
        f"title: {_yaml_string(title)}",
        f"tags: [{', '.join(_yaml_string(tag, flow=True) for tag in tags)}]",
        "related: []",
    ]
    if questions:
        lines.append("questions:")
        lines.extend(f"  - {json.dumps(question, ensure_ascii=False)}" for question in questions)
    lines.append("---")
    return "\n".join(lines) + "\n" + body + "\n"


# --- atomic, serialised writes ---------------------------------------------------------------

@contextlib.contextmanager
def _writing(kb_dir: Path) -> Iterator[None]:
    """One edit of the folder at a time, from reading the file to replacing it."""
    if not kb_dir.is_dir():
        raise KbEditError(f"knowledge base directory not found: {kb_dir}")
    with folder_lock(kb_dir):
        yield

