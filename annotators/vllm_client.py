"""Async client for any OpenAI-compatible chat server (vLLM in production): bounded concurrency, timeouts,
retries with exponential backoff and jitter on 429/5xx/connection errors, schema-constrained answers."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass

import aiohttp
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class Sampling(BaseModel):
    """Decoding settings; part of the cache key."""

    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16)  # bounded schema fields keep answers far below this
    seed: int = 0


class EndpointError(Exception):
    """No answer: the server is unreachable or kept failing after every retry (the recording stays pending)."""


class RequestError(Exception):
    """The server refused the request itself (4xx other than 408/409/429): retrying cannot help."""


@dataclass
class Completion:
    text: str
    finish_reason: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    attempts: int


class ChatClient:
    """Use as `async with ChatClient(...) as client: await client.complete(...)`. `requests` counts every
    HTTP request sent, retries included."""

    def __init__(self, endpoint: str, model: str, concurrency: int = 8, timeout_s: float = 300, retries: int = 4,
                 backoff_s: float = 1.0, api_key: str | None = None):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries, self.backoff_s = retries, backoff_s
        self.api_key = api_key or os.environ.get("VLA_VLM_API_KEY")
        self.semaphore = asyncio.Semaphore(concurrency)
        self.requests = 0
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ChatClient":
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.session = aiohttp.ClientSession(timeout=self.timeout, headers=headers)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    def payload(self, messages: list[dict], schema: dict, sampling: Sampling) -> dict:
        return {"model": self.model, "messages": messages, **sampling.model_dump(),
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "recording_annotation", "schema": schema, "strict": True}}}

    async def complete(self, messages: list[dict], schema: dict, sampling: Sampling) -> Completion:
        body = self.payload(messages, schema, sampling)
        last = ""
        async with self.semaphore:
            for attempt in range(1, self.retries + 2):
                t0 = time.monotonic()
                self.requests += 1
                retry_after = None
                try:
                    async with self.session.post(self.url, json=body) as r:
                        if r.status == 200:
                            data = await r.json()
                            choice, usage = data["choices"][0], data.get("usage") or {}
                            return Completion(choice["message"]["content"] or "", choice.get("finish_reason") or "",
                                              usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                              time.monotonic() - t0, attempt)
                        text = (await r.text())[:500]
                        if r.status not in RETRY_STATUS:
                            raise RequestError(f"HTTP {r.status} from {self.url}: {text}")
                        last = f"HTTP {r.status}: {text}"
                        retry_after = r.headers.get("Retry-After")
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as e:
                    last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                if attempt > self.retries:
                    break
                delay = float(retry_after) if retry_after and retry_after.isdigit() else \
                    self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.debug("attempt %d to %s failed (%s); retrying in %.1f s", attempt, self.url, last, delay)
                await asyncio.sleep(delay)
        raise EndpointError(f"no answer from {self.url} after {self.retries + 1} attempts: {last}")
