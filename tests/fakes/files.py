"""Files served over HTTP on 127.0.0.1, for the platform fakes (attachments).

``FileHost.add`` keeps a file and returns its URL; a GET of it answers the bytes (streamed in
chunks, as a CDN does), or the status the test asked for, or nothing for ``delay`` seconds.
With ``token`` set, a request must carry ``Authorization: Bearer <token>``, as Slack's
``url_private_download`` does: without it Slack sends the browser to its sign-in page (a 302
here).  ``downloads`` records each request: (file name, Authorization header).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

CHUNK = 16 * 1024


@dataclass
class Hosted:
    data: bytes
    content_type: str
    status: int = 200
    delay: float = 0.0


@dataclass
class FileHost:
    token: str | None = None  # the bearer token a download needs (None: none)
    files: dict[str, Hosted] = field(default_factory=dict)
    downloads: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.base = ""

    def install(self, app: web.Application) -> None:
        app.router.add_get("/files/{fid}/{name}", self._get)

    def add(
        self, name: str, data: bytes, content_type: str = "text/plain", *, status: int = 200, delay: float = 0.0
    ) -> tuple[str, str]:
        """Host ``data`` as ``name``: (file id, URL).  ``base`` must be set (the server's address)."""
        fid = f"F{next(self._ids):05d}"
        self.files[fid] = Hosted(data, content_type, status, delay)
        return fid, f"{self.base}/files/{fid}/{quote(name)}"

    async def _get(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.downloads.append((request.match_info["name"], auth))
        hosted = self.files.get(request.match_info["fid"])
        if hosted is None:
            return web.Response(status=404)
        if self.token is not None and auth != f"Bearer {self.token}":
            raise web.HTTPFound("/signin")
        if hosted.delay:
            await asyncio.sleep(hosted.delay)
        if hosted.status != 200:
            return web.Response(status=hosted.status)
        response = web.StreamResponse(headers={"Content-Type": hosted.content_type})
        await response.prepare(request)
        for start in range(0, len(hosted.data), CHUNK):
            await response.write(hosted.data[start : start + CHUNK])
        await response.write_eof()
        return response


def pdf(text: str) -> bytes:
    """A one-page PDF whose text layer is ``text`` (one line; ASCII), as a real PDF writer lays it out."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
