"""Shared fixtures of the RAG tests: the fixture knowledge base indexed once per session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.components import build_dense, build_retriever, build_sparse
from rag.index import QdrantIndex
from rag.ingest import ingest_kb
from rag.settings import RagSettings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_KB = FIXTURES / "kb"
FIXTURE_QUESTIONS = FIXTURES / "questions.yml"


@pytest.fixture(scope="session")
def fixture_settings(tmp_path_factory) -> RagSettings:
    """Settings for the fixture KB: defaults of the code (not the project's rag.yml), no sync."""
    root = tmp_path_factory.mktemp("rag")
    return RagSettings(
        kb_dir=FIXTURE_KB, qdrant_path=root / "qdrant", collection="fixture", sync_on_start=False,
        answer_threshold=0.8, clarify_threshold=0.7,
    )


@pytest.fixture(scope="session")
def encoders(fixture_settings):
    return build_dense(fixture_settings), build_sparse(fixture_settings)


@pytest.fixture(scope="session")
def fixture_index(fixture_settings, encoders) -> QdrantIndex:
    dense, sparse = encoders
    index = QdrantIndex.in_memory("fixture")
    ingest_kb(index, FIXTURE_KB, dense, sparse, max_chars=fixture_settings.max_chunk_chars)
    yield index
    index.close()


@pytest.fixture(scope="session")
def retriever(fixture_settings, fixture_index, encoders):
    dense, sparse = encoders
    return build_retriever(fixture_settings, fixture_index, dense, sparse)


@pytest.fixture
def kb_copy(tmp_path) -> Path:
    """A writable copy of the fixture KB."""
    target = tmp_path / "kb"
    shutil.copytree(FIXTURE_KB, target)
    return target
