"""Why CPU per streamed token is what it is: reading the same streams with different clients.

30 answers at once, 40 tokens/s each, from the provider double; a separate
client process reads them and reports its own CPU per token.  Clients: a bare
``asyncio.Protocol`` (the floor: one event-loop wake-up per token, no HTTP
library), aiohttp, and our provider (httpx + httpx-sse + parsing), each on
the standard asyncio loop and on uvloop.  Run as a scenario (``python -m bench
transport``); the client side is ``python -m bench.transport CLIENT LOOP URL N``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlparse

from .common import Row
from .load import answer_for
from .provider import ProviderDouble

CLIENTS = ("raw", "aiohttp", "httpx")
LOOPS = ("asyncio", "uvloop")


def _request(i: int) -> dict[str, object]:
    return {"stream": True, "messages": [{"role": "user", "content": f"q{i}"}]}


def _count(frame: bytes) -> int:
    start = frame.find(b"data: {")
    if start < 0:
        return 0
    data = json.loads(frame[start + 6 :])
    return int(bool(data.get("choices") and data["choices"][0]["delta"].get("content")))


async def read_raw(url: str, n: int) -> int:
    loop = asyncio.get_running_loop()
    parts = urlparse(url)

    class Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.tokens, self.buffer, self.done = 0, b"", loop.create_future()

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            *frames, self.buffer = self.buffer.split(b"\n\n")
            for frame in frames:
                self.tokens += _count(frame[: frame.rfind(b"}") + 1])
                if b"[DONE]" in frame and not self.done.done():
                    self.done.set_result(None)

    async def one(i: int) -> int:
        transport, reader = await loop.create_connection(Reader, parts.hostname, parts.port)
        body = json.dumps(_request(i)).encode()
        head = f"POST {parts.path}/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        transport.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await reader.done
        transport.close()
        return reader.tokens

    return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def read_aiohttp(url: str, n: int) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            tokens, buffer = 0, b""
            async with session.post(url + "/chat/completions", json=_request(i)) as response:
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *frames, buffer = buffer.split(b"\n\n")
                    tokens += sum(_count(f) for f in frames if not f.endswith(b"[DONE]"))
            return tokens

        return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def read_httpx(url: str, n: int) -> int:
    from bot.conversation import Turn
    from bot.providers.base import ChatRequest
    from bot.providers.registry import build_provider
    from bot.settings import Settings

    transport = None
    if os.environ.get("BENCH_HTTPX_AIOHTTP"):  # httpx's API over aiohttp (``pip install httpx-aiohttp``)
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport()
    settings = Settings(_env_file=None, openai_base_url=url, openai_api_key="x")
    provider = build_provider("openai", settings, transport)  # type: ignore[arg-type]

    async def one(i: int) -> int:
        return sum([bool(d.text) async for d in provider.stream(ChatRequest([Turn("user", f"q{i}")], 4096))])

    try:
        return sum(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await provider.aclose()


def client_main(argv: list[str]) -> None:
    client, loop, url, n = argv[0], argv[1], argv[2], int(argv[3])
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    reader = {"raw": read_raw, "aiohttp": read_aiohttp, "httpx": read_httpx}[client]
    if client == "httpx":  # imports are not reading: keep them out of the measured CPU
        import bot.providers.registry  # noqa: F401
        import bot.settings  # noqa: F401
    start = time.process_time()
    tokens = asyncio.run(reader(url, n))
    print(json.dumps({"cpu": time.process_time() - start, "tokens": tokens}))


async def measure(client: str, loop: str, url: str, n: int) -> float:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.transport", client, loop, url, str(n), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    result = json.loads(out.decode().strip().splitlines()[-1])
    return float(result["cpu"]) / int(result["tokens"]) * 1e6


async def bench_transport(quick: bool = False) -> list[Row]:
    tokens = 80 if quick else 200
    provider = await ProviderDouble(answer_for(tokens), ttft=0.1, rate=40.0).start()
    rows = []
    try:
        for loop in LOOPS:
            raw = await measure("raw", loop, provider.base_url, 30)
            for client in CLIENTS:
                us = raw if client == "raw" else await measure(client, loop, provider.base_url, 30)
                label = {"raw": "bare asyncio.Protocol (floor)", "aiohttp": "aiohttp",
                         "httpx": "our provider (httpx + httpx-sse)"}[client]
                rows.append(Row(f"reading 30 streams at 40 tokens/s, {loop}", f"client CPU per token: {label}",
                                us, "µs", extra={"tokens per stream": tokens}))
    finally:
        await provider.stop()
    return rows


if __name__ == "__main__":
    client_main(sys.argv[1:])
