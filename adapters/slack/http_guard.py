"""A gate in front of Bolt's HTTP Events API handler.

Bolt parses a request body (``AsyncBoltRequest(...)``) before it checks the
signature, and that parse raises on a body that is not a JSON object (``{``,
``null``, invalid UTF-8 ...): anyone who can reach ``SLACK_PORT`` could then
get a 500 and a traceback in our logs.  ``guard`` checks the signature first
(400 for a body that is not UTF-8, 401 without a valid signature, as Bolt would answer) and refuses a signed body
Bolt could not read (400), so only Slack's own, readable requests reach Bolt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(signing_secret: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware: signed and readable POST bodies only."""
    verifier = SignatureVerifier(signing_secret)

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST":
            return await handler(request)
        raw = await request.read()  # cached: Bolt reads the same body afterwards
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.Response(status=400, text="unreadable request body")
        if not verifier.is_valid_request(body, request.headers):
            return web.Response(status=401, text="invalid request")
        if not readable(body, request.content_type):
            log.info("slack: a signed Events API request with an unreadable body was refused")
            return web.Response(status=400, text="unreadable request body")
        return await handler(request)

    return gate


def readable(body: str, content_type: str) -> bool:
    """Whether Bolt can read ``body``: a JSON object, or a form whose ``payload`` (if any) is one."""
    try:
        if content_type == "application/json" or body.startswith("{"):
            return isinstance(json.loads(body), dict)
        payload = dict(parse_qsl(body, keep_blank_values=True)).get("payload")
        return payload is None or isinstance(json.loads(payload), dict)
    except (ValueError, RecursionError):
        return False
