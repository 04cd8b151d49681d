"""The App Home tab: how to use the bot, and the user's own usage today.

A user opening the Home tab arrives as ``app_home_opened`` with ``tab == "home"``; the view is
published afresh each time (``views.publish``), so its numbers are current: the tokens and cost
of the user's answers since midnight UTC (the store's ledger, ``Core.usage_today``), beside their
daily budget when ``BOT_USER_DAILY_TOKENS`` / ``BOT_USER_DAILY_COST`` set one.  ``home_view``
builds the view and does no I/O.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.access import Caller, DailyUsage
from bot.errors import PlatformError, RelayError
from bot.incoming import Core

from .api import SlackApi
from .format import escape

log = logging.getLogger(__name__)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def usage_lines(usage: DailyUsage | None) -> list[str]:
    """The user's usage today, against their daily budget when they have one (None: unknown)."""
    if usage is None:
        return ["• not available right now; `/relay status` shows it too"]
    tokens = f"• *{usage.tokens:,}* tokens"
    if usage.max_tokens:
        share = min(100, round(100 * usage.tokens / usage.max_tokens))
        tokens += f" of your {usage.max_tokens:,} a day ({share}%)"
    cost = f"• ${usage.cost:.4f}"
    if usage.max_cost:
        cost += f" of your ${usage.max_cost:.2f} a day"
    lines = [tokens, cost]
    if not usage.max_tokens and not usage.max_cost:
        lines.append("• no daily limit for you")
    return lines


def home_view(bot_name: str, usage: DailyUsage | None, *, agent_view: bool) -> dict[str, Any]:
    """The Home tab of one user."""
    name = escape(bot_name)
    dm = (
        "each message you send me there starts its own thread, answered in it"
        if agent_view
        else "or open me from the AI apps panel: each chat is its own thread"
    )
    ask = [
        "*Ask me*",
        f"• *Mention me* in a channel: `@{name} how do I undo a git commit?`: I answer in a thread, "
        "and later messages in that thread need no mention.",
        f"• *Message me* in the Messages tab: {dm}.",
        "• `/ask your question`: the question and the answer show in the channel for everyone.",
        "• Files attached to a question (text, code, CSV, JSON, PDF) are read with it.",
    ]
    controls = [
        "*While I answer*",
        "• *Stop* (or react :octagonal_sign: to the answer, or Slack's stop button in our DM) ends it: "
        "what was written stays.",
        "• *Regenerate* answers again, 👍 / 👎 tell the admins how it went.",
        "• `/relay status` shows this channel's settings, `/relay usage` your last 30 days.",
    ]
    today = ["*Your usage today* (since midnight UTC)", *usage_lines(usage)]
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": bot_name[:150], "emoji": True}},
            _section("\n".join(ask)),
            _section("\n".join(controls)),
            {"type": "divider"},
            _section("\n".join(today)),
        ],
    }


async def publish(
    api: SlackApi, core: Core, caller: Caller, bot_name: str, *, agent_view: bool
) -> None:
    """Publish ``caller``'s Home tab (their usage read now); a failure is logged."""
    usage: DailyUsage | None = None
    try:
        usage = await core.usage_today(caller)
    except RelayError as exc:
        log.warning("slack: Home tab without usage (the store did not answer): %s", exc)
    try:
        await api.call("views.publish", user_id=caller.user, view=home_view(bot_name, usage, agent_view=agent_view))
    except PlatformError as exc:
        log.info("slack: Home tab not published: %s", exc)
