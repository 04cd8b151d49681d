"""A provider's real context window, when the server can tell, and what to say about windows.

A local OpenAI-compatible server often runs with a window far smaller than the
131,072 tokens ``OPENAI_CONTEXT_WINDOW`` assumes.  Where the server says what it
is, it is read: llama.cpp's server (``GET /props``:
``default_generation_settings.n_ctx``), vLLM (``GET /v1/models``: the model's
``max_model_len``), Ollama (``POST /api/show``: ``num_ctx`` among the model's
parameters, else its ``*.context_length``).  A "too long" error names the window
too, in most servers' wording (``window_in_error``).

The sentences here name the setting to change, ``<NAME>_CONTEXT_WINDOW`` or
``BOT_MAX_TOKENS``: an operator reads them in ``doctor``, at start and in notes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import httpx

#: Seconds a server gets to say its window (one look-up, once per process).
LOOKUP_TIMEOUT = 3.0
#: Tokens a prompt needs besides the system prompt's: the template (30) and a short question.
MIN_QUESTION = 128

_IN_TEXT = (
    re.compile(r"available context size \((\d+) tokens\)"),  # llama.cpp's server
    re.compile(r"maximum context length is (\d+)"),  # vLLM, llama-cpp-python
    re.compile(r"context (?:length|window) of (\d+)"),  # DeepInfra, llama-cpp-python's own text
)


def setting(provider: str) -> str:
    """The variable that holds ``provider``'s window."""
    return f"{provider.upper()}_CONTEXT_WINDOW"


def window_in_error(body: object, message: str) -> int | None:
    """The window a "too long" error names: llama.cpp's ``n_ctx`` field, or a number in its text."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        n_ctx = error.get("n_ctx")
        if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
            return n_ctx
    for pattern in _IN_TEXT:
        found = pattern.search(message)
        if found:
            return int(found.group(1))
    return None


async def server_window(client: httpx.AsyncClient, model: str, timeout: float = LOOKUP_TIMEOUT) -> int | None:
    """The window the server at ``client``'s base URL (``…/v1``) says it has; None when it does not say."""
    try:
        async with asyncio.timeout(timeout):
            for look_up in (_llama_cpp, _vllm, _ollama):
                window = await look_up(client, model)
                if window:
                    return window
    except (TimeoutError, httpx.HTTPError, ValueError):
        return None
    return None


def _root(client: httpx.AsyncClient) -> str:
    """The server's root: the base URL without its ``/v1``."""
    return str(client.base_url).rstrip("/").removesuffix("/v1")


async def _json(response: httpx.Response) -> object:
    return response.json() if response.status_code == 200 else None


async def _llama_cpp(client: httpx.AsyncClient, model: str) -> int | None:
    body = await _json(await client.get(f"{_root(client)}/props"))
    settings = body.get("default_generation_settings") if isinstance(body, Mapping) else None
    return _positive(settings.get("n_ctx")) if isinstance(settings, Mapping) else None


async def _vllm(client: httpx.AsyncClient, model: str) -> int | None:
    body = await _json(await client.get("models"))
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        return None
    entries = [m for m in data if isinstance(m, Mapping)]
    chosen = [m for m in entries if m.get("id") == model] or entries[:1]
    return _positive(chosen[0].get("max_model_len")) if chosen else None


async def _ollama(client: httpx.AsyncClient, model: str) -> int | None:
    body = await _json(await client.post(f"{_root(client)}/api/show", json={"model": model}))
    if not isinstance(body, Mapping):
        return None
    parameters = body.get("parameters")
    if isinstance(parameters, str):
        found = re.search(r"^num_ctx\s+(\d+)", parameters, re.M)
        if found:
            return int(found.group(1))
    info = body.get("model_info")
    if isinstance(info, Mapping):
        for key, value in info.items():
            if str(key).endswith(".context_length"):
                return _positive(value)
    return None


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# -- what to tell the operator ---------------------------------------------------------------


def mismatch(provider: str, configured: int, real: int) -> str:
    """The server's window is smaller than the setting says."""
    return (
        f"{provider}: the server's context window is {real:,} tokens, smaller than "
        f"{setting(provider)}={configured}; using {real:,} (set {setting(provider)}={real})"
    )


def no_room(provider: str, window: int, max_tokens: int, system_tokens: int) -> str | None:
    """A sentence when ``BOT_MAX_TOKENS`` leaves a ``window`` no room for the conversation."""
    if max_tokens + system_tokens + MIN_QUESTION <= window:
        return None
    suggested = max(16, window // 4)
    return (
        f"BOT_MAX_TOKENS={max_tokens} leaves no room for the conversation in {provider}'s "
        f"{window:,}-token window ({setting(provider)}): answers get half the window and earlier "
        f"messages are left out; set BOT_MAX_TOKENS={suggested} or so, or give the server a larger window"
    )
