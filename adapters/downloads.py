"""Downloading an attached file over HTTP, bounded: at most N bytes, streamed (httpx).

Both platforms hand out a URL per file (Slack's ``url_private_download`` needs the bot token,
Discord's CDN URL needs nothing).  The body is read chunk by chunk and the download stops at the
byte cap, so a huge file costs no more than the cap.  The time bound is the core's
(``BOT_ATTACHMENT_TIMEOUT`` around the whole download, ``bot.attachments``).  Every failure
becomes ``DownloadFailed`` with a few words a user can read.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from bot.attachments import Download, DownloadFailed

CHUNK = 64 * 1024


async def download(
    url: str, max_bytes: int, headers: Mapping[str, str] | None = None, *, redirected: str | None = None
) -> Download:
    """The first ``max_bytes`` of ``url`` (``truncated`` when there was more).  A redirect is not
    followed (it would carry the headers elsewhere): it fails with ``redirected``, or a plain reason."""
    try:
        async with (
            httpx.AsyncClient(timeout=None, follow_redirects=False) as client,
            client.stream("GET", url, headers=dict(headers or {})) as response,
        ):
            if response.is_redirect and redirected is not None:
                raise DownloadFailed(redirected)
            if response.status_code != 200:
                raise DownloadFailed(_status(response.status_code))
            data = bytearray()
            async for chunk in response.aiter_bytes(CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    return Download(bytes(data[:max_bytes]), truncated=True)
            return Download(bytes(data), truncated=False)
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"the download failed ({type(exc).__name__})") from None


def _status(status: int) -> str:
    if status == 404:
        return "the file is gone (HTTP 404)"
    if status in (401, 403):
        return f"access was refused (HTTP {status})"
    return f"the server answered HTTP {status}"
