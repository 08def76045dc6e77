"""A generator behind any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp
server, Ollama, LM Studio, hosted APIs), over httpx.

The API key is read from the environment variable named in the settings at request time (never
stored in files or settings reprs); local servers usually need none.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import httpx

from rag.answerers.base import (
    Answer,
    AnswererResponseError,
    AnswererUnavailable,
    Passage,
    build_messages,
    prompt_passages,
)


class OpenAICompatibleAnswerer:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_seconds: float = 20.0,
        max_tokens: int = 300,
        max_passages: int = 4,
        environ: Optional[dict] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_seconds = float(timeout_seconds)
        self.max_tokens = int(max_tokens)
        self.max_passages = int(max_passages)
        self._environ = environ
        self._client = httpx.Client(timeout=self.timeout_seconds, transport=transport)

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = (self._environ if self._environ is not None else os.environ).get(self.api_key_env or "", "")
        if key.strip():
            headers["Authorization"] = f"Bearer {key.strip()}"
        return headers

    def answer(self, question: str, passages: Sequence[Passage]) -> Answer:
        shown = prompt_passages(passages, self.max_passages)
        body = {
            "model": self.model,
            "messages": build_messages(question, shown),
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        try:
            response = self._client.post(self.url, json=body, headers=self._headers())
        except httpx.TimeoutException as error:
            raise AnswererUnavailable(f"{self.url} timed out after {self.timeout_seconds:g} s") from error
        except httpx.HTTPError as error:
            raise AnswererUnavailable(f"{self.url} cannot be reached: {error}") from error
        if response.status_code != 200:
            raise AnswererResponseError(f"{self.url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            text = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise AnswererResponseError(f"{self.url} returned no completion: {response.text[:200]}") from error
        if not isinstance(text, str) or not text.strip():
            raise AnswererResponseError(f"{self.url} returned an empty completion")
        top = shown[0] if shown else None
        return Answer(
            text=text.strip(),
            answerer=self.name,
            article_id=top.article_id if top else None,
            source_title=top.title if top else None,
            passages=tuple(shown),
            generated=True,
        )

    def close(self) -> None:
        self._client.close()
