"""An ``/ask`` interaction kept across a restart.

Discord lets an application write an interaction's response for 15 minutes
after it arrived, with the interaction's token.  ``saved`` keeps the few
fields that need (in the request record, like a message reference);
``rebuilt`` turns them back into a ``discord.Interaction`` so a question
accepted before a crash is still answered, or told it was not, in the same
"thinking…" response.  An expired one is never written to.
"""

from __future__ import annotations

from typing import Any

import discord

#: Discord's default upload limit; discord.py reads it from every interaction payload.
ATTACHMENT_SIZE_LIMIT = 8 * 1024 * 1024
#: Followups Discord accepts to an interaction used through a user's install alone (error 40094 past it).
USER_INSTALL_FOLLOWUPS = 5


def saved(interaction: discord.Interaction) -> dict[str, Any]:
    user = interaction.user
    return {
        "id": str(interaction.id),
        "application_id": str(interaction.application_id),
        "token": interaction.token,
        "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
        "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        "user": {"id": str(user.id), "username": user.name, "global_name": user.global_name},
        "user_install_only": user_install_only(interaction),
    }


def user_install_only(interaction: discord.Interaction) -> bool:
    """Was it used through the user's own install of the app alone (not the server's)?  Discord
    then allows only ``USER_INSTALL_FOLLOWUPS`` followups to its response."""
    return interaction.is_user_integration() and not interaction.is_guild_integration()


def rebuilt(client: discord.Client, data: dict[str, Any]) -> discord.Interaction | None:
    """The interaction ``saved`` kept, or None when its token has expired or the data is unreadable."""
    try:
        user = data["user"]
        payload: Any = {
            "id": data["id"],
            "application_id": data["application_id"],
            "type": discord.InteractionType.application_command.value,
            "token": data["token"],
            "version": 1,
            "channel_id": data.get("channel_id"),
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        user = {**user, "discriminator": "0", "avatar": None}
        if data.get("guild_id"):  # in a guild, discord.py reads the asker as a member
            payload["guild_id"] = data["guild_id"]
            payload["member"] = {"user": user, "roles": [], "joined_at": None, "flags": 0, "deaf": False, "mute": False}
        else:
            payload["user"] = user
        if data.get("user_install_only"):
            payload["authorizing_integration_owners"] = {"1": user["id"]}
        interaction = discord.Interaction(data=payload, state=client._connection)
    except (KeyError, TypeError, ValueError):
        return None
    return None if interaction.is_expired() else interaction
