"""A spaCy pipeline component that sets Russian lemmas with pymorphy3.

spaCy 3.4's own Russian lemmatizer only knows pymorphy2, which does not install on Python 3.10+.
This component is registered as the spaCy factory ``pymorphy3_lemmatizer`` through the project's
``spacy_factories`` entry point, so ``spacy.load`` (and therefore Rasa's ``SpacyNLP``) finds it
without importing anything from here first.
"""

from functools import lru_cache
from typing import Callable

from spacy.language import Language
from spacy.tokens import Doc

_CYRILLIC = set("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")


@lru_cache(maxsize=1)
def _morph_analyzer():
    import pymorphy3

    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=200_000)
def lemmatize_word(word: str) -> str:
    """Returns the lemma of one word: pymorphy3 for Cyrillic words, lower case for the rest."""
    lowered = word.lower()
    if not any(char in _CYRILLIC for char in lowered):
        return lowered
    return _morph_analyzer().parse(lowered)[0].normal_form.replace("ё", "е")


@lru_cache(maxsize=200_000)
def lemma_candidates(word: str) -> frozenset:
    """All plausible lemmas of a word («золотом» -> {золото, золотой}), for lookup matching."""
    lowered = word.lower()
    if not any(char in _CYRILLIC for char in lowered):
        return frozenset({lowered})
    parses = _morph_analyzer().parse(lowered)[:4]
    return frozenset({parse.normal_form.replace("ё", "е") for parse in parses} | {lemmatize_word(word)})


class Pymorphy3Lemmatizer:
    """Writes ``token.lemma_`` for every token of a ``Doc``."""

    def __call__(self, doc: Doc) -> Doc:
        for token in doc:
            token.lemma_ = lemmatize_word(token.text)
        return doc


@Language.factory("pymorphy3_lemmatizer")
def make_pymorphy3_lemmatizer(nlp: Language, name: str) -> Callable[[Doc], Doc]:
    return Pymorphy3Lemmatizer()


@lru_cache(maxsize=50_000)
def is_common_word(lemma: str) -> bool:
    """True for a dictionary word that is not a proper name («лента», «магнит», «подружка»)."""
    if not any(char in _CYRILLIC for char in lemma):
        return False
    for parse in _morph_analyzer().parse(lemma):
        if parse.is_known and not ({"Name", "Surn", "Patr", "Geox", "Orgn", "Trad"} & set(parse.tag.grammemes)):
            return True
    return False
