"""A gate in front of Bolt's HTTP Events API handler.

Bolt parses a request body (``AsyncBoltRequest(...)``) before it checks the
signature, and that parse raises on a body that is not a JSON object (``{``,
``null``, invalid UTF-8 ...): anyone who can reach ``SLACK_PORT`` could then
get a 500 and a traceback in our logs.  ``guard`` checks the signature first
(400 for a body that is not UTF-8, 401 without a valid signature, as Bolt would answer) and refuses a signed body
Bolt could not read (400), so only Slack's own, readable requests reach Bolt.
slack_sdk's verifier itself raises ``ValueError`` on a timestamp that is not
an integer (``X-Slack-Request-Timestamp: abc``); ``signed`` reads the stamp
first, so such a request is a plain 401 too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Middleware
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(signing_secret: str) -> Middleware:
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
        if not signed(verifier, body, request.headers):
            return web.Response(status=401, text="invalid request")
        if not readable(body, request.content_type):
            log.info("slack: a signed Events API request with an unreadable body was refused")
            return web.Response(status=400, text="unreadable request body")
        return await handler(request)

    return gate


def signed(verifier: SignatureVerifier, body: str, headers: Mapping[str, str]) -> bool:
    """Whether ``body`` carries a valid, fresh Slack signature (False for an unreadable timestamp)."""
    stamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if stamp is None or signature is None or not _is_stamp(stamp):
        return False
    return verifier.is_valid(body=body, timestamp=stamp, signature=signature)


def _is_stamp(value: str) -> bool:
    """Unix seconds as Slack sends them: ASCII digits, no sign, no exponent, of a sane length."""
    return value.isascii() and value.isdigit() and len(value) <= 12


def readable(body: str, content_type: str) -> bool:
    """Whether Bolt can read ``body``: a JSON object, or a form whose ``payload`` (if any) is one."""
    try:
        if content_type == "application/json" or body.startswith("{"):
            return isinstance(json.loads(body), dict)
        payload = dict(parse_qsl(body, keep_blank_values=True)).get("payload")
        return payload is None or isinstance(json.loads(payload), dict)
    except (ValueError, RecursionError):
        return False
