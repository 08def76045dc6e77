"""Russian text normalisation shared by the sparse vectors, the grounding check and the answerers.

Lemmas come from pymorphy3 exactly as in ``nlu/spacy_lemmatizer.py`` (first parse, ``ё`` -> ``е``),
but without importing spaCy: the action server that hosts the knowledge service should not pay
spaCy's import time (seconds) for a dictionary look-up.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import FrozenSet, List, Tuple

_CYRILLIC = set("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")
_TOKEN_RE = re.compile(r"[0-9a-zа-яё]+(?:[-'][0-9a-zа-яё]+)*", re.IGNORECASE)
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")
# Function words: pymorphy3 parts of speech that carry no topic (prepositions, conjunctions,
# particles, interjections, pronouns).
_FUNCTION_POS = frozenset({"PREP", "CONJ", "PRCL", "INTJ", "NPRO"})
# Frequent words that pass the part-of-speech filter but say nothing about the topic of a
# question («как мне быть, что делать, если ...»).
STOP_LEMMAS: FrozenSet[str] = frozenset(
    """
    быть мочь хотеть нужно надо можно нельзя делать сделать сказать подсказать скажите
    подскажите пожалуйста здравствуйте привет спасибо добрый
    весь всё все свой мой ваш наш твой его ее их этот тот такой какой который
    так также тоже еще ещё уже очень просто вообще вот там тут здесь где когда куда
    почему зачем сколько как что кто ли бы же ну да нет или либо и а но
    вы ты я он она они мы это то
    """.split()
)


@lru_cache(maxsize=1)
def _morph_analyzer():
    import pymorphy3

    return pymorphy3.MorphAnalyzer(lang="ru")


def normalise(text: str) -> str:
    """Lower case, ``ё`` -> ``е``, runs of white space collapsed."""
    return re.sub(r"\s+", " ", text.lower().replace("ё", "е")).strip()


def tokens(text: str) -> List[str]:
    return _TOKEN_RE.findall(normalise(text))


@lru_cache(maxsize=200_000)
def _analyse(word: str) -> Tuple[str, bool]:
    """(lemma, is_content_word) of one lower-case token."""
    if not any(char in _CYRILLIC for char in word):
        return word, word not in STOP_LEMMAS
    parse = _morph_analyzer().parse(word)[0]
    lemma = parse.normal_form.replace("ё", "е")
    content = parse.tag.POS not in _FUNCTION_POS and lemma not in STOP_LEMMAS and word not in STOP_LEMMAS
    return lemma, content


def lemmatize_word(word: str) -> str:
    return _analyse(word.lower().replace("ё", "е"))[0]


def content_lemmas(text: str) -> List[str]:
    """Lemmas of the topic-bearing words of ``text``, in order (repeats kept)."""
    result = []
    for token in tokens(text):
        lemma, content = _analyse(token)
        if content and (len(lemma) > 1 or lemma.isdigit()):
            result.append(lemma)
    return result


def numbers(text: str) -> List[str]:
    """Numbers written in ``text`` with decimal commas as points («1,5» -> «1.5»)."""
    return [number.replace(",", ".") for number in _NUMBER_RE.findall(text.replace("\u00a0", " "))]


_SENTENCE_RE = re.compile(r"(?<=[.!?…])\s+(?=[«\"(A-ZА-ЯЁ0-9])|\n+")


def split_sentences(text: str) -> List[str]:
    """Sentences (and list items / lines) of a short answer."""
    parts = [part.strip(" \t-•*") for part in _SENTENCE_RE.split(text or "")]
    return [part for part in parts if part and re.search(r"\w", part)]
