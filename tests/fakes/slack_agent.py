"""The agent side of the fake Slack: assistant threads, agent sessions, the App Home.

Mixed into ``FakeSlack`` (which dispatches ``POST /api/{method}`` to ``_method_name``):

* ``assistant.threads.setStatus``: at most 10 ``loading_messages`` (Slack's limit), else
  ``invalid_arguments``; every status set is kept in ``statuses`` per ``(channel, thread_ts)``.
* ``assistant.threads.setSuggestedPrompts``: the prompts shown, in ``prompts`` per channel (an
  assistant thread: per ``(channel, thread_ts)``).  With ``agent_view`` on, a call that names a
  ``thread_ts`` is ignored silently, as Slack does for an agent app (docs.slack.dev
  "assistant.threads.setSuggestedPrompts"): it answers ok and nothing shows.
* ``agents.sessions.setStatus``: ``status`` one of processing / active / suspended / closed, else
  ``invalid_arguments``; a ``thread_ts`` is needed (thread-based sessions in channels and DMs),
  a ``title`` of at most 200 characters; ``sessions`` keeps each session's statuses in order.
* ``views.publish``: a ``home`` view for a ``user_id`` (at most 100 blocks), kept in ``home``.
* ``thread_started(user, channel)`` builds the ``assistant_thread_started`` event of a new
  assistant thread; ``app_opened(user, channel, tab)`` builds the ``app_home_opened`` event of a user opening the
  app's Messages or Home tab; ``stop_session(channel, thread_ts)`` is Slack's stop button: it
  stops the bot's open streams in that thread (as Slack does) and returns the
  ``agent_session_stopped`` event naming them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

SESSION_STATUSES = frozenset({"processing", "active", "suspended", "closed"})
MAX_LOADING_MESSAGES = 10
MAX_TITLE = 200
MAX_VIEW_BLOCKS = 100


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class AgentSurfaces:
    """Mixed into ``FakeSlack``, which provides ``messages``, ``_streams`` and ``next_ts``."""

    messages: dict[str, dict[str, dict[str, Any]]]
    _streams: dict[tuple[str, str], Any]

    next_ts: Any  # () -> str, FakeSlack's

    def open_agent_surfaces(self) -> None:
        self.agent_view = False  # the app's manifest has agent_view (not assistant_view)
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.prompts: dict[str | tuple[str, str], list[dict[str, str]]] = {}
        self.sessions: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.home: dict[str, dict[str, Any]] = {}

    # -- events ----------------------------------------------------------------------------------

    def thread_started(self, user: str = "U1", channel: str = "D9") -> dict[str, Any]:
        """The ``assistant_thread_started`` event of ``user`` opening a new assistant thread (its
        ``thread_ts`` is in ``event["assistant_thread"]``)."""
        thread_ts = self.next_ts()
        return {
            "type": "assistant_thread_started",
            "assistant_thread": {"user_id": user, "channel_id": channel, "thread_ts": thread_ts, "context": {}},
            "event_ts": thread_ts,
        }

    def app_opened(self, user: str = "U1", channel: str = "D1", tab: str = "messages") -> dict[str, Any]:
        """The ``app_home_opened`` event of ``user`` opening the app's ``tab`` (messages or home)."""
        event: dict[str, Any] = {
            "type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": self.next_ts(),
        }
        if tab == "home" and user in self.home:
            event["view"] = self.home[user]
        return event

    def stop_session(self, channel: str, thread_ts: str, *, user: str = "U1") -> dict[str, Any]:
        """Slack's stop button pressed by ``user`` in a thread: the bot's open streams there stop, and
        the ``agent_session_stopped`` event names them."""
        stopped = []
        for (where, ts), stream in self._streams.items():
            message = self.messages[where].get(ts, {})
            if where == channel and stream.open and message.get("thread_ts") == thread_ts:
                stream.open = False
                stopped.append(ts)
        return {
            "type": "agent_session_stopped", "channel": channel, "user": user, "thread_ts": thread_ts,
            "streaming_message_ts": stopped, "event_ts": self.next_ts(),
        }

    # -- methods ---------------------------------------------------------------------------------

    def _assistant_threads_setStatus(self, params: dict[str, Any]) -> dict[str, Any]:
        loading = _json(params.get("loading_messages")) or []
        if not params.get("channel_id") or not params.get("thread_ts") or len(loading) > MAX_LOADING_MESSAGES:
            return {"ok": False, "error": "invalid_arguments"}
        self.statuses[(params["channel_id"], params["thread_ts"])].append(
            {"status": params.get("status", ""), "loading_messages": loading}
        )
        return {"ok": True}

    def _assistant_threads_setSuggestedPrompts(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, thread = params.get("channel_id"), params.get("thread_ts")
        if not channel or not isinstance(_json(params.get("prompts")), list):
            return {"ok": False, "error": "invalid_arguments"}
        if self.agent_view and thread:
            return {"ok": True}  # Slack ignores it silently for an agent app
        self.prompts[(channel, thread) if thread else channel] = _json(params["prompts"])
        return {"ok": True}

    def _agents_sessions_setStatus(self, params: dict[str, Any]) -> dict[str, Any]:
        status, thread = params.get("status"), params.get("thread_ts")
        if status not in SESSION_STATUSES or not params.get("channel_id") or not thread:
            return {"ok": False, "error": "invalid_arguments"}
        if len(params.get("title") or "") > MAX_TITLE:
            return {"ok": False, "error": "invalid_arguments"}
        self.sessions[(params["channel_id"], thread)].append(status)
        return {"ok": True, "status": status}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        view = _json(params.get("view"))
        user = params.get("user_id")
        if not user or not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        if len(view.get("blocks") or []) > MAX_VIEW_BLOCKS:
            return {"ok": False, "error": "invalid_blocks"}
        self.home[user] = view
        return {"ok": True, "view": {"id": f"V{user}", "type": "home", **view}}
