"""The modal side of the fake Slack: message shortcuts, ``views.open`` and form submissions.

``shortcut(channel, ts)`` builds the ``message_action`` payload of a person using the app's
message shortcut on a stored message (deliver it with ``kind="interactive"``); ``views.open``
keeps the view it opens in ``views`` (a trigger id is good for one view, within 3 s of the
shortcut, else ``expired_trigger_id``; ``private_metadata`` of at most 3,000 characters, else
``invalid_arguments``); ``submit(view_id, text)`` builds the
``view_submission`` payload of that form submitted with ``text`` typed in its input.
"""

from __future__ import annotations

import json
import time
from typing import Any

TRIGGER_LIFETIME = 3.0  # seconds a trigger id can open a view
METADATA_LIMIT = 3000  # characters of a view's private_metadata


class Views:
    """Mixed into ``FakeSlack``, which holds the messages, names and ids used here."""

    messages: dict[str, dict[str, dict[str, Any]]]
    names: dict[str, str]
    api_url: str

    def open_views(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}  # view id -> the view opened
        self._triggers: dict[str, float] = {}  # trigger id -> when it was handed out
        self._view_ids = 0

    def shortcut(
        self, channel: str, ts: str, callback_id: str = "relay_ask_message", *, user: str = "U1"
    ) -> dict[str, Any]:
        """The ``message_action`` payload of ``user`` using the shortcut on the message at ``ts``."""
        trigger = f"trig-shortcut-{len(self._triggers) + 1}"
        self._triggers[trigger] = time.monotonic()
        return {
            "type": "message_action",
            "token": "verification-token",
            "action_ts": f"{time.time():.6f}",
            "team": {"id": "T1", "domain": "test"},
            "user": {"id": user, "username": self.names.get(user, user).lower(), "name": user.lower(), "team_id": "T1"},
            "channel": {"id": channel, "name": "general"},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": trigger,
            "response_url": f"{self.api_url}respond",
            "message_ts": ts,
            "message": dict(self.messages[channel][ts]),
        }

    def submit(self, view_id: str, text: str | None, *, user: str = "U1") -> dict[str, Any]:
        """The ``view_submission`` payload of the form ``view_id`` submitted with ``text`` typed
        in each plain-text input (None: left empty)."""
        view = self.views[view_id]
        values = {
            block["block_id"]: {block["element"]["action_id"]: {"type": "plain_text_input", "value": text}}
            for block in view.get("blocks") or []
            if block.get("type") == "input"
        }
        return {
            "type": "view_submission",
            "token": "verification-token",
            "team": {"id": "T1", "domain": "test"},
            "user": {"id": user, "username": self.names.get(user, user).lower(), "name": user.lower(), "team_id": "T1"},
            "api_app_id": "A1",
            "trigger_id": f"trig-submit-{view_id}",
            "is_enterprise_install": False,
            "enterprise": None,
            "response_urls": [],
            "view": {
                **view,
                "id": view_id,
                "team_id": "T1",
                "app_id": "A1",
                "bot_id": "BBOT",
                "hash": f"hash-{view_id}",
                "state": {"values": values},
                "previous_view_id": None,
                "root_view_id": view_id,
            },
        }

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        opened = self._triggers.pop(str(params.get("trigger_id")), None)
        if opened is None or time.monotonic() - opened > TRIGGER_LIFETIME:
            return {"ok": False, "error": "expired_trigger_id"}
        self._view_ids += 1
        view_id = f"V{self._view_ids:06d}"
        view = params["view"]
        view = json.loads(view) if isinstance(view, str) else view
        if len(view.get("private_metadata") or "") > METADATA_LIMIT:
            return {"ok": False, "error": "invalid_arguments"}
        self.views[view_id] = view
        return {"ok": True, "view": {**view, "id": view_id}}
