"""Knowledge-base retrieval fallback: hybrid (dense + BM25) search in Qdrant and grounded answers.

The entry point for the assistant is :class:`rag.service.KnowledgeService`::

    from rag import KnowledgeService, RagResult

    service = KnowledgeService.from_settings()      # once; loads lazily
    result: RagResult = service.answer("скока действует серт?")
    result.status  # "answered" | "clarify" | "no_answer"
"""
from __future__ import annotations

__all__ = ["KnowledgeService", "RagResult", "RagSettings"]


def __getattr__(name):  # keep `import rag` cheap: the service pulls in qdrant_client and numpy
    if name in ("KnowledgeService", "RagResult"):
        from rag import service

        return getattr(service, name)
    if name == "RagSettings":
        from rag.settings import RagSettings

        return RagSettings
    raise AttributeError(name)
