"""Slack's agent messaging experience (manifest ``agent_view``): the DM's greeting, and each
answer's agent session.

With ``agent_view`` (``SLACK_AGENT_VIEW``) a user opening the app's DM arrives as
``app_home_opened`` with ``tab == "messages"``: the suggested prompts are set for the DM (no
``thread_ts``: with one, Slack ignores the call for an agent app), and a DM with no messages yet
gets the greeting (a DM known to have messages is not read again).  Every DM message is
a thread root, answered in its thread.  While the answer comes its agent session is
``processing`` (``agents.sessions.setStatus``, titled with the question: Slack shows its stop
button) and a status line rotates the loading messages (``assistant.threads.setStatus``, the one
method that takes them); once the reply is final the session is ``active`` again.  A press of
Slack's stop button (``agent_session_stopped``) is a Stop press (``controls``).

All of it is a nicety: a failure is logged and the answer goes on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from bot.errors import PlatformError

from .api import SlackApi

log = logging.getLogger(__name__)

#: agent session statuses (docs.slack.dev "Agent sessions")
PROCESSING, ACTIVE = "processing", "active"
#: DM channels known to have messages (no greeting there), kept per process
KNOWN_DMS = 20_000


async def set_session(
    api: SlackApi, channel: str, thread_ts: str, status: str, *, title: str | None = None, user: str | None = None
) -> None:
    """Set the agent session of a thread to ``status`` (Slack creates it, with ``title`` and
    ``user`` as its initiator, the first time).  A 429 is waited out once: a session left
    ``processing`` would keep showing Slack's stop button."""
    try:
        await api.call(
            "agents.sessions.setStatus", retries=1, channel_id=channel, thread_ts=thread_ts, status=status,
            title=title or None, initiator_user_id=user,
        )
    except PlatformError as exc:
        log.info("slack: agent session of %s not set %s: %s", thread_ts, status, exc)


class AgentDMs:
    """The agent DM opening: suggested prompts every time, the greeting in a DM still empty."""

    def __init__(self, api: SlackApi, greeting: str, prompts: Sequence[dict[str, str]]) -> None:
        self.api = api
        self.greeting = greeting
        self.prompts = list(prompts)
        self._spoken: OrderedDict[str, None] = OrderedDict()  # DMs with messages in them

    async def opened(self, channel: str) -> None:
        """The user opened the DM ``channel`` (``app_home_opened``, ``tab == "messages"``)."""
        try:
            if self.prompts:
                await self.api.call("assistant.threads.setSuggestedPrompts", channel_id=channel, prompts=self.prompts)
            if not await self._spoken_in(channel):
                await self.api.call("chat.postMessage", retries=2, channel=channel, text=self.greeting)
                self._remember(channel)
        except PlatformError as exc:
            log.info("slack: agent DM greeting not shown: %s", exc)

    async def _spoken_in(self, channel: str) -> bool:
        """Whether the DM has any message (read once; remembered once it has)."""
        if channel in self._spoken:
            return True
        data: dict[str, Any] = await self.api.call("conversations.history", retries=2, channel=channel, limit=1)
        if data.get("messages"):
            self._remember(channel)
            return True
        return False

    def _remember(self, channel: str) -> None:
        self._spoken[channel] = None
        self._spoken.move_to_end(channel)
        if len(self._spoken) > KNOWN_DMS:
            self._spoken.popitem(last=False)
