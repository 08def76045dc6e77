"""Shared fixtures: Rasa graph-component factories and one trained model per test session."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import asyncio
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _project_root_cwd() -> None:
    # config.yml refers to the spaCy pipeline by a project-relative path, as `rasa train` does.
    os.chdir(PROJECT_ROOT)


@pytest.fixture
def model_storage(tmp_path: Path) -> ModelStorage:
    storage_path = tmp_path / "storage"
    storage_path.mkdir()
    return LocalModelStorage(storage_path)


@pytest.fixture
def execution_context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test-model")


@pytest.fixture
def resource() -> Resource:
    return Resource("component")


@pytest.fixture
def create_component(model_storage, execution_context, resource) -> Callable:
    """Factory: ``create_component(Class, {config})`` -> a new (untrained) component."""

    def create(component_class, config: Dict[str, Any] | None = None):
        merged = {**component_class.get_default_config(), **(config or {})}
        return component_class.create(merged, model_storage, resource, execution_context)

    return create


@pytest.fixture
def load_component(model_storage, execution_context, resource) -> Callable:
    """Factory: ``load_component(Class, {config})`` -> the component loaded from storage."""

    def load(component_class, config: Dict[str, Any] | None = None):
        merged = {**component_class.get_default_config(), **(config or {})}
        return component_class.load(merged, model_storage, resource, execution_context)

    return load


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> str:
    """The whole assistant trained with `rasa train` semantics (config.yml, domain, data + scenarios)."""
    from rasa.api import train

    output = tmp_path_factory.mktemp("models")
    result = train(
        domain="domain.yml",
        config="config.yml",
        training_files="data",
        output=str(output),
        fixed_model_name="session-model",
    )
    assert result.code == 0, "rasa train failed"
    return result.model


@pytest.fixture(scope="session")
def agent(trained_model):
    from rasa.core.agent import Agent

    return Agent.load(trained_model)


@pytest.fixture(scope="session")
def parse(agent) -> Callable[[str], Dict[str, Any]]:
    def run(text: str) -> Dict[str, Any]:
        return asyncio.run(agent.parse_message(text))

    return run


def entity_pairs(parsed: Dict[str, Any]) -> List[tuple]:
    return sorted((e["entity"], e["value"]) for e in parsed.get("entities", []))


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (tests/local_servers.py): ``postgres.database()`` → a new database URL."""
    from tests.local_servers import postgres_server, require

    with postgres_server() as server:
        require(server, "postgresql")
        yield server


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis server's URL (tests/local_servers.py)."""
    from tests.local_servers import redis_server, require

    with redis_server() as url:
        require(url, "redis-server")
        yield url
