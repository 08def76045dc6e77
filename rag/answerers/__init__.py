"""Answerers turn retrieved passages into a reply: extractive (default) or generated."""
from rag.answerers.base import (
    Answer,
    Answerer,
    AnswererError,
    AnswererResponseError,
    AnswererUnavailable,
    Passage,
    SYSTEM_PROMPT,
    build_messages,
)
from rag.answerers.extractive import ExtractiveAnswerer

__all__ = [
    "Answer", "Answerer", "AnswererError", "AnswererResponseError", "AnswererUnavailable", "Passage",
    "SYSTEM_PROMPT", "build_messages", "ExtractiveAnswerer", "HuggingFaceAnswerer", "OpenAICompatibleAnswerer",
]


def __getattr__(name):  # generators import httpx / transformers only when asked for
    if name == "HuggingFaceAnswerer":
        from rag.answerers.huggingface import HuggingFaceAnswerer

        return HuggingFaceAnswerer
    if name == "OpenAICompatibleAnswerer":
        from rag.answerers.openai_compatible import OpenAICompatibleAnswerer

        return OpenAICompatibleAnswerer
    raise AttributeError(name)
