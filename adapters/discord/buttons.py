"""The buttons of a Discord reply (pure): components out, our ``custom_id``s read back.

The buttons the core chose (Stop while the answer streams; Regenerate, 👍, 👎 once final) go
out as one action row; each ``custom_id`` is ``relay:<action>:<reply key>`` (``bot.controls``).
The view is stopped before it is sent, so discord.py keeps no per-message state for it: a press
arrives as a plain ``INTERACTION_CREATE`` (``controls.DiscordControls``), after a restart too.
"""

from __future__ import annotations

import discord

from bot.controls import ACTIONS

PREFIX = "relay:"
LABELS = {"stop": "Stop", "regenerate": "Regenerate", "up": "👍", "down": "👎"}
STYLES = {"stop": discord.ButtonStyle.danger}


def custom_id(action: str, key: str) -> str:
    return f"{PREFIX}{action}:{key}"


def view_of(controls: tuple[str, ...], key: str) -> discord.ui.View | None:
    """The buttons of a message (None: none)."""
    if not controls:
        return None
    view = discord.ui.View(timeout=None)
    for action in controls:
        style = STYLES.get(action, discord.ButtonStyle.secondary)
        view.add_item(discord.ui.Button(label=LABELS[action], style=style, custom_id=custom_id(action, key)))
    view.stop()  # sent as components only: presses come to ``on_interaction``
    return view


def parse(value: object) -> tuple[str, str] | None:
    """(action, key) of one of our buttons' ``custom_id``; None otherwise."""
    if not isinstance(value, str) or not value.startswith(PREFIX) or len(value) > 100:
        return None
    action, sep, key = value.removeprefix(PREFIX).partition(":")
    return (action, key) if sep and action in ACTIONS else None
