"""Dataoorts serverless: ``POST {DATAOORTS_BASE_URL}`` (the base URL is the endpoint).

Wire format (seed ``003``, ``reference/providers.md``):

* request: ``{"model": "meta/llama-3.1-70b-instruct", "data": {"messages":
  [...], "max_tokens": N, "temperature": ...}}``; streaming is not
  documented, so the answer is asked for whole;
* reply: the Cloudflare v4 envelope ``{"errors": [], "messages": [],
  "result": {"response": "…", "usage": {...}}, "success": true}``, delivered
  to the reply stream as one delta.  Should it ever answer with
  ``text/event-stream``, the Workers AI stream parser reads it;
* parameters, window (25,000 tokens, ``max_tokens`` included) and error
  codes are budgeted and mapped like Cloudflare's.

Nothing arrives until the whole answer is ready, so the gap-between-chunks
timeout is the whole-turn timeout here, and there is no first-token deadline
shorter than the turn's (the first token is the whole answer).
"""

from __future__ import annotations

import httpx

from . import params
from .base import ChatRequest
from .cloudflare import WorkersEnvelope
from .streaming import HttpProvider


class DataoortsProvider(WorkersEnvelope, HttpProvider):
    def http_timeout(self) -> httpx.Timeout:
        whole = max(self.timeouts.read, self.timeouts.turn)
        return httpx.Timeout(connect=self.timeouts.connect, read=whole, write=30.0, pool=10.0)

    def first_token_timeout(self) -> float | None:
        return None  # the first text is the whole answer: only the turn deadline bounds it

    def path(self, request: ChatRequest) -> str:
        return self.config.base_url  # the base URL is the endpoint (absolute: no slash added)

    def body(self, request: ChatRequest) -> dict[str, object]:
        data: dict[str, object] = {
            "messages": [{"role": m["role"], "content": m["content"] or ""} for m in request.messages()],
            "max_tokens": request.max_tokens,
        }
        data.update(params.select(self.info.name, request.sampling))
        return {"model": self.model(request), "data": data}
