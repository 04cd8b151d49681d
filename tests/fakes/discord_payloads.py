"""Payloads for the fake Discord: ids, users, members, channels, the guild, messages, interactions.

Shapes follow discord.py's TypedDicts (``discord/types/``) closely enough for
the real client to parse them; keep every payload the fake sends in this module.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime
from typing import Any

BOT_ID = 900_000_000_000_000_001
APP_ID = 900_000_000_000_000_002
GUILD_ID = 910_000_000_000_000_001
CHANNEL_ID = 920_000_000_000_000_001
OTHER_CHANNEL_ID = 920_000_000_000_000_002
DM_CHANNEL_ID = 930_000_000_000_000_001
ROLE_ID = 940_000_000_000_000_001
#: a guild the bot is not in, and a DM between two people: reached only as a user-installed app
FOREIGN_GUILD_ID = 915_000_000_000_000_001
FOREIGN_CHANNEL_ID = 960_000_000_000_000_001
PRIVATE_CHANNEL_ID = 935_000_000_000_000_001
ALICE = 950_000_000_000_000_001
BOB = 950_000_000_000_000_002
OTHER_BOT = 950_000_000_000_000_003

MESSAGE_CONTENT = 1 << 15  # the privileged intent bit
ALL_PERMISSIONS = "2248473465835073"

DISCORD_EPOCH_MS = 1_420_070_400_000
_counter = itertools.count(1)


def snowflake() -> int:
    """A fresh id whose timestamp is now (discord.py derives ``created_at`` and expiry from it)."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user(uid: int, name: str, *, bot: bool = False, global_name: str | None = None) -> dict[str, Any]:
    return {
        "id": str(uid),
        "username": name,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "bot": bot,
    }


USERS = {
    BOT_ID: user(BOT_ID, "relay", bot=True),
    ALICE: user(ALICE, "alice", global_name="Alice A."),
    BOB: user(BOB, "bob", global_name="Bob"),
    OTHER_BOT: user(OTHER_BOT, "otherbot", bot=True),
}


def member(uid: int, roles: list[int] | None = None, nick: str | None = None) -> dict[str, Any]:
    return {
        "user": USERS[uid],
        "roles": [str(r) for r in roles or []],
        "joined_at": "2024-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "nick": nick,
    }


def shard_of(guild_id: int, count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % count


def text_channel(cid: int, name: str, guild_id: int = GUILD_ID) -> dict[str, Any]:
    return {
        "id": str(cid),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
    }


def dm_channel(cid: int, recipient: int) -> dict[str, Any]:
    return {"id": str(cid), "type": 1, "recipients": [USERS[recipient]], "last_message_id": None}


def thread_channel(
    tid: int, parent: int, name: str, archive_minutes: int, guild_id: str = str(GUILD_ID)
) -> dict[str, Any]:
    """A public thread the bot started (a thread started from a message has that message's id)."""
    return {
        "id": str(tid),
        "type": 11,
        "guild_id": guild_id,
        "parent_id": str(parent),
        "owner_id": str(BOT_ID),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": archive_minutes,
            "archive_timestamp": now_iso(),
            "locked": False,
        },
    }


def role(rid: int, name: str, position: int) -> dict[str, Any]:
    return {
        "id": str(rid),
        "name": name,
        "permissions": ALL_PERMISSIONS,
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def guild(
    channels: list[dict[str, Any]], roles: dict[int, list[int]], guild_id: int = GUILD_ID
) -> dict[str, Any]:
    """GUILD_CREATE for a guild (the main one by default): its channels, active threads, roles, members."""
    mine = [c for c in channels if c.get("guild_id") == str(guild_id)]
    return {
        "id": str(guild_id),
        "name": "Fake Guild" if guild_id == GUILD_ID else f"Fake Guild {guild_id}",
        "icon": None,
        "owner_id": str(ALICE),
        "roles": [role(guild_id, "@everyone", 0), role(ROLE_ID, "helpers", 1)],
        "channels": [c for c in mine if c["type"] == 0],
        "threads": [c for c in mine if c["type"] == 11],
        "members": [member(BOT_ID), member(ALICE, roles.get(ALICE)), member(BOB)],
        "member_count": 3,
        "features": [],
        "emojis": [],
        "stickers": [],
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "system_channel_flags": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
        "large": False,
        "unavailable": False,
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "joined_at": "2024-01-01T00:00:00+00:00",
    }


def ready(
    gateway_url: str,
    guilds: tuple[int, ...] = (GUILD_ID,),
    shard: tuple[int, int] = (0, 1),
    session: str = "fake-session",
) -> dict[str, Any]:
    """READY for a session: the guilds of its shard (sent as unavailable, then GUILD_CREATE each)."""
    return {
        "v": 10,
        "user": bot_user(),
        "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
        "session_id": session,
        "resume_gateway_url": gateway_url,
        "shard": list(shard),
        "application": {"id": str(APP_ID), "flags": 0},
    }


def bot_user() -> dict[str, Any]:
    return {**USERS[BOT_ID], "verified": True, "mfa_enabled": False, "flags": 0}


def application() -> dict[str, Any]:
    return {
        "id": str(APP_ID),
        "name": "relay",
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": USERS[ALICE],
        "verify_key": "00",
        "flags": 0,
    }


def _member_part(uid: int, roles: list[int] | None = None) -> dict[str, Any]:
    return {k: v for k, v in member(uid, roles).items() if k != "user"}


def message(
    channel: dict[str, Any],
    author: int,
    content: str,
    *,
    roles: list[int] | None = None,
    reference: dict[str, Any] | None = None,
    reference_id: int | None = None,
    mid: int | None = None,
) -> dict[str, Any]:
    """MESSAGE_CREATE / REST message.  ``reference`` is the replied-to message (None if deleted)."""
    guild_id = channel.get("guild_id")
    mentioned = sorted({int(x) for x in re.findall(r"<@!?(\d+)>", content)} & USERS.keys())
    msg: dict[str, Any] = {
        "id": str(mid or snowflake()),
        "channel_id": channel["id"],
        "author": USERS[author],
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [{**USERS[uid], "member": _member_part(uid)} for uid in mentioned],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "components": [],
    }
    if guild_id:
        msg["guild_id"] = guild_id
        msg["member"] = _member_part(author, roles)
    if reference_id is not None:
        msg["type"] = 19
        msg["message_reference"] = {
            "message_id": str(reference_id),
            "channel_id": channel["id"],
            **({"guild_id": guild_id} if guild_id else {}),
        }
        # one level only, as on Discord: the referenced message's own reference is not resolved
        msg["referenced_message"] = (
            {k: v for k, v in reference.items() if k != "referenced_message"} if reference else None
        )
    return msg


def interaction(
    name: str, options: dict[str, str], channel: dict[str, Any], author: int, roles: list[int] | None
) -> dict[str, Any]:
    """INTERACTION_CREATE for a slash command with string options, used in a guild channel."""
    return {
        "id": str(snowflake()),
        "application_id": str(APP_ID),
        "type": 2,
        "token": f"itoken{snowflake()}",
        "version": 1,
        "guild_id": channel.get("guild_id", str(GUILD_ID)),
        "channel_id": channel["id"],
        "channel": channel,
        "member": {**member(author, roles), "permissions": ALL_PERMISSIONS},
        "app_permissions": ALL_PERMISSIONS,
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": channel.get("guild_id", str(GUILD_ID))},
        "context": 0,
        "attachment_size_limit": 8_388_608,
        "data": {
            "id": str(snowflake()),
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()],
        },
    }


def placed(payload: dict[str, Any], channel: dict[str, Any], author: int, *, user_install: bool) -> dict[str, Any]:
    """An interaction's context as Discord sends it: a guild (0), the bot's DM (1) or another
    private channel (2), and who installed the app that gets it (a guild, or the user)."""
    if channel.get("guild_id"):
        payload["context"] = 0
    else:
        for key in ("guild_id", "member", "guild_locale"):
            payload.pop(key, None)
        payload["user"] = USERS[author]
        payload["context"] = 1 if int(channel["id"]) == DM_CHANNEL_ID else 2
    if user_install:
        payload["authorizing_integration_owners"] = {"1": str(author)}
    elif not channel.get("guild_id"):
        payload["authorizing_integration_owners"] = {"0": "0"}
    return payload


def message_command(
    name: str, msg: dict[str, Any], channel: dict[str, Any], author: int, roles: list[int] | None,
    *, user_install: bool = False,
) -> dict[str, Any]:
    """INTERACTION_CREATE for the message context-menu command ``name`` used on ``msg``: an
    application command whose ``data.type`` is 3, with ``target_id`` and the message resolved."""
    payload = placed(interaction(name, {}, channel, author, roles), channel, author, user_install=user_install)
    payload["data"] = {
        "id": str(snowflake()),
        "name": name,
        "type": 3,
        "target_id": msg["id"],
        "resolved": {"messages": {msg["id"]: {k: v for k, v in msg.items() if k != "allowed_mentions"}}},
    }
    return payload


def component_interaction(
    msg: dict[str, Any], custom_id: str, channel: dict[str, Any], author: int, roles: list[int] | None
) -> dict[str, Any]:
    """INTERACTION_CREATE for a click on the button ``custom_id`` of the message ``msg``."""
    payload = interaction("", {}, channel, author, roles)
    if not channel.get("guild_id"):
        for key in ("guild_id", "member", "guild_locale"):
            payload.pop(key, None)
        payload["user"] = USERS[author]
        payload["context"] = 1
        payload["authorizing_integration_owners"] = {"1": str(author)}
    payload.update(type=3, message=msg, data={"custom_id": custom_id, "component_type": 2})
    return payload


def reaction_add(msg: dict[str, Any], emoji: str, user_id: int, roles: list[int] | None) -> dict[str, Any]:
    """MESSAGE_REACTION_ADD: ``user_id`` adds the unicode ``emoji`` to ``msg``."""
    payload: dict[str, Any] = {
        "user_id": str(user_id),
        "channel_id": msg["channel_id"],
        "message_id": msg["id"],
        "message_author_id": msg["author"]["id"],
        "emoji": {"id": None, "name": emoji},
        "burst": False,
        "burst_colors": [],
        "type": 0,
    }
    if msg.get("guild_id"):
        payload["guild_id"] = msg["guild_id"]
        payload["member"] = member(user_id, roles)
    return payload
