"""Keep the gateway alive when discord.py cannot read an event.

discord.py turns each gateway event into objects in a parser
(``ConnectionState.parse_*``) called straight from the websocket loop: a
payload it cannot read (a field missing or of another type) raises out of
that loop and ends ``Client.start`` — the whole Discord connection.
``guard_parsers`` wraps every parser so such an event is dropped with one
warning and the connection carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

#: what discord.py's parsers raise on a payload that does not match its types
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)

Parser = Callable[[Any], None]


def guard_parsers(parsers: MutableMapping[str, Parser]) -> None:
    """Wrap each parser in place (the websocket reads this same dict)."""
    for event, parse in list(parsers.items()):
        parsers[event] = _guarded(event, parse)


def _guarded(event: str, parse: Parser) -> Parser:
    def run(data: Any) -> None:
        try:
            parse(data)
        except UNREADABLE as exc:
            log.warning(
                "discord: dropped a %s event it could not read (%s: %s)", event, type(exc).__name__, exc
            )

    return run
