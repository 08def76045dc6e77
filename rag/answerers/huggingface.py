"""A local causal language model from a folder, through transformers (optional ``ml`` extra).

CPU, greedy decoding, ``max_new_tokens`` new tokens. torch and transformers are imported and the
model is loaded on the first answer, so configuring it costs nothing until it is used. The
tokenizer's chat template is used when it has one, a plain prompt otherwise.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional, Sequence

from rag.answerers.base import Answer, AnswererResponseError, AnswererUnavailable, Passage, build_messages, prompt_passages


class HuggingFaceAnswerer:
    name = "hf-local"

    def __init__(self, model_path: str, max_new_tokens: int = 200, max_passages: int = 3, threads: Optional[int] = None) -> None:
        self.model_path = str(model_path)
        self.max_new_tokens = int(max_new_tokens)
        self.max_passages = int(max_passages)
        self.threads = threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        if not Path(self.model_path).is_dir():
            raise AnswererUnavailable(f"Hugging Face model folder not found: {self.model_path}")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:
            raise AnswererUnavailable(
                "The hf-local answerer needs the optional extra: `bash scripts/setup.sh --ml`."
            ) from error
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise AnswererUnavailable(f"Cannot load the model at {self.model_path}: {error}") from error
        model.to("cpu").eval()
        self._tokenizer, self._model = tokenizer, model

    def prompt(self, question: str, passages: Sequence[Passage]) -> str:
        self._load()
        messages = build_messages(question, passages)
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{messages[0]['content']}\n\n{messages[1]['content']}\n\nОтвет:"

    def answer(self, question: str, passages: Sequence[Passage]) -> Answer:
        shown = prompt_passages(passages, self.max_passages)
        with self._lock:
            prompt = self.prompt(question, shown)
            import torch

            tokenizer, model = self._tokenizer, self._model
            context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 2048)
            budget = max(16, int(context) - self.max_new_tokens)
            encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            input_ids = encoded["input_ids"][:, -budget:]
            attention = encoded["attention_mask"][:, -budget:]
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            with torch.no_grad():
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                )
            text = tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True).strip()
        if not text:
            raise AnswererResponseError("the model generated no text")
        top = shown[0] if shown else None
        return Answer(
            text=text,
            answerer=self.name,
            article_id=top.article_id if top else None,
            source_title=top.title if top else None,
            passages=tuple(shown),
            generated=True,
        )
