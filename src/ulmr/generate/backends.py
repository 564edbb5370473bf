"""Generation backends: a local Hugging Face model, or any OpenAI-compatible chat server.

Both take whole conversations (few-shot examples are earlier turns) and return one reply each.
The OpenAI backend reads its API key from an environment variable at request time; the key is never
stored on the object, logged, or put into an exception message.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from typing import Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .. import inference
from ..data.chat import ChatFormat
from ..errors import UlmrError

log = logging.getLogger(__name__)

Turn = dict[str, str]


class BackendError(UlmrError):
    """A generation server failed or answered with something unusable."""


@runtime_checkable
class Backend(Protocol):
    """Anything that turns conversations into replies. ``name`` identifies it in records and caches."""

    name: str

    def chat(
        self, conversations: list[list[Turn]], max_new_tokens: int, temperature: float, seed: int, top_p: float = 1.0
    ) -> list[str]: ...


class LocalBackend:
    """Batched generation with a loaded model through the project's chat format (greedy at temperature 0).

    With ``reuse_prefix`` (the default) the conversation turns before the last one, i.e. the few-shot
    examples every prompt of a stage shares, are computed once and reused from the key/value cache by
    every later batch and round with the same weights; replies are those of plain batches up to
    floating-point rounding (see :func:`ulmr.inference.generate`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 32,
        name: str | None = None,
        reuse_prefix: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.reuse_prefix = reuse_prefix
        self.fmt = ChatFormat(tokenizer)
        self.name = name or self._default_name(model)
        self.contexts: inference.ContextStore = {}  # few-shot contexts, reused by later rounds of a stage

    @staticmethod
    def _default_name(model: PreTrainedModel) -> str:
        """``local:<model>``, plus ``@<dtype>`` unless float32: the name is part of the generation cache key,
        and a model cast from float32 generates other replies."""
        dtype = "" if model.dtype == torch.float32 else f"@{str(model.dtype).removeprefix('torch.')}"
        return f"local:{getattr(model, 'name_or_path', '') or type(model).__name__}{dtype}"

    def chat(
        self, conversations: list[list[Turn]], max_new_tokens: int, temperature: float, seed: int, top_p: float = 1.0
    ) -> list[str]:
        encoded = [self.fmt.prompt_ids_and_context(turns) for turns in conversations]
        prompts = [ids for ids, _ in encoded]
        sample = temperature > 0
        return inference.generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=self.batch_size,
            do_sample=sample,
            temperature=temperature if sample else 1.0,
            top_p=top_p,
            seed=seed,
            context_lens=[n for _, n in encoded] if self.reuse_prefix else None,
            context_store=self.contexts,
        )


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class OpenAIBackend:
    """Any server with an OpenAI-compatible ``/v1/chat/completions`` (vLLM, TGI, llama.cpp server...).

    Requests run concurrently (at most ``max_workers``); connection errors, timeouts, 429 and 5xx are
    retried up to ``max_retries`` times with exponential backoff. Conversation ``i`` of a call is sent
    with ``seed + i`` so identical prompts in one call still sample differently.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 5,
        max_workers: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ):
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise BackendError(f"base_url must start with http:// or https://, got '{base_url}'")
        self.url = url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_workers = max(1, max_workers)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.name = f"openai:{model}"

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def _post(self, body: dict) -> dict:
        key = self._key()
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = _redact(e.read().decode("utf-8", "replace")[:200].replace("\n", " "), key)
                last = f"HTTP {e.code}: {detail}"
                if e.code != 429 and e.code < 500:
                    raise BackendError(f"{self.url}: {last}") from None
                if e.headers.get("Retry-After", "").isdigit():
                    retry_after = float(e.headers["Retry-After"])
            except (urllib.error.URLError, HTTPException, ConnectionError, TimeoutError, OSError) as e:
                last = _redact(f"{type(e).__name__}: {getattr(e, 'reason', e)}", key)
            except json.JSONDecodeError:
                raise BackendError(f"{self.url}: the server's reply is not JSON") from None
            if attempt < self.max_retries:
                wait = retry_after if retry_after is not None else self.backoff * 2**attempt * (1 + 0.1 * random.random())
                wait = min(wait, self.max_backoff)
                log.warning("%s: %s; retry %d/%d in %.1f s", self.url, last, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise BackendError(f"{self.url}: failed after {self.max_retries + 1} attempts ({last})")

    def _one(self, messages: list[Turn], max_new_tokens: int, temperature: float, top_p: float, seed: int) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
        }
        reply = self._post(body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.url}: reply has no choices[0].message.content") from None
        return (content or "").strip()

    def chat(
        self, conversations: list[list[Turn]], max_new_tokens: int, temperature: float, seed: int, top_p: float = 1.0
    ) -> list[str]:
        if not conversations:
            return []
        workers = min(self.max_workers, len(conversations))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._one, c, max_new_tokens, temperature, top_p, seed + i) for i, c in enumerate(conversations)]
            return [f.result() for f in futures]
