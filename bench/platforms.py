"""The two platform fakes as benchmark drivers: start with limits, send questions, read the outcome.

A driver owns one fake (``tests/fakes``) for one load.  ``ask`` sends a
question event tagged ``q<n>`` and notes when it went out; ``outcome`` reads
the fake's recorded calls back into one ``Seen`` per conversation: when the
bot first called the platform for it, when text first became visible, when
the last write landed, how many writes and 429s it took, and the text the
user ends up reading (split messages joined back together).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from bot.splitting import join_parts
from tests.fakes import discord_payloads as dp
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import BOT_USER, FakeSlack

#: Discord: 5 message creates/edits per 5 s per channel.  Slack: chat.update 50/min per workspace.
DISCORD_LIMIT = (5, 5.0)
SLACK_UPDATES_PER_MINUTE = 50
#: A lenient Slack: chat.update 10 a second per channel (what a small workspace may get away with).
SLACK_LENIENT = (10, 1.0)


@dataclass
class Seen:
    """One conversation as the platform saw it (monotonic times of the benchmark process)."""

    tag: str
    channel: str
    event_at: float
    first_call_at: float | None = None
    first_text_at: float | None = None
    final_at: float | None = None
    writes: int = 0
    limited: int = 0
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return join_parts(self.parts)


class DiscordDriver:
    name = "discord"

    def __init__(self, limits: bool = True) -> None:
        self.fake = FakeDiscord(write_limit=DISCORD_LIMIT if limits else None)
        self.questions: dict[int, tuple[str, int, float]] = {}  # message id -> (tag, channel, sent)
        self._identified: float | None = None

    async def start(self, channels: int) -> None:
        self.channel_ids = [dp.CHANNEL_ID] + [dp.CHANNEL_ID + 1000 + i for i in range(channels - 1)]
        for i, cid in enumerate(self.channel_ids[1:]):
            self.fake.channels[cid] = dp.text_channel(cid, f"bench-{i}")
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": "fake.token.value",
            "DISCORD_API_URL": self.fake.api_url,
            "DISCORD_GATEWAY_URL": self.fake.gateway_url,
        }

    async def connected(self) -> float:
        """Wait until the bot has identified on the gateway; when it did (monotonic)."""
        await self.fake.ready.wait()
        if self._identified is None:
            self._identified = time.monotonic()
        return self._identified

    async def ask(self, tag: str, channel_index: int) -> None:
        cid = self.channel_ids[channel_index]
        msg = self.fake._message(cid, dp.ALICE, f"<@{dp.BOT_ID}> q{tag} please explain streaming")
        sent = time.monotonic()
        self.questions[int(msg["id"])] = (tag, cid, sent)
        await self.fake.dispatch("MESSAGE_CREATE", msg)

    def outcome(self) -> dict[str, Seen]:
        seen = {tag: Seen(tag, str(cid), at) for tag, cid, at in self.questions.values()}
        owner: dict[int, str] = {mid: tag for mid, (tag, _, _) in self.questions.items()}
        messages: dict[str, list[int]] = defaultdict(list)
        typing: dict[str, list[float]] = defaultdict(list)
        for call in self.fake.calls:
            parts = call.path.strip("/").split("/")
            if parts[0] != "channels" or len(parts) < 2:
                continue
            if parts[2:] == ["typing"]:
                typing[parts[1]].append(call.at)
                continue
            if parts[2:3] != ["messages"] or call.method not in ("POST", "PATCH"):
                continue
            if call.method == "POST":
                ref = (call.body or {}).get("message_reference") or {}
                tag = owner.get(int(ref.get("message_id", 0)))
            else:
                tag = owner.get(int(parts[3]))
            if tag is None:
                continue
            one = seen[tag]
            if call.status == 429:
                one.limited += 1
                continue
            if call.status != 200 or call.message_id is None:
                continue
            if call.method == "POST":
                owner[call.message_id] = tag
                messages[tag].append(call.message_id)
            one.writes += 1
            if one.first_text_at is None and (call.body or {}).get("content"):
                one.first_text_at = call.at
            one.final_at = call.at
            one.first_call_at = min(one.first_call_at or call.at, call.at)
        _match_typing(seen, typing)
        for tag, mids in messages.items():
            cid = int(seen[tag].channel)
            seen[tag].parts = [self.fake.messages[cid][mid]["content"] for mid in mids]
        return seen


def _match_typing(seen: dict[str, Seen], typing: dict[str, list[float]]) -> None:
    """The typing call is a conversation's first platform call, but it names only the channel:
    the k-th typing call in a channel is matched to the k-th question sent there (answers start
    in arrival order; exact when a channel has one conversation)."""
    by_channel: dict[str, list[Seen]] = defaultdict(list)
    for one in seen.values():
        by_channel[one.channel].append(one)
    for channel, convs in by_channel.items():
        convs.sort(key=lambda s: s.event_at)
        for one, at in zip(convs, typing.get(channel, [])):
            one.first_call_at = min(one.first_call_at or at, at)


class SlackDriver:
    name = "slack"

    def __init__(self, limits: bool = True) -> None:
        self.fake = FakeSlack(names={"U1": "Ada"})
        if limits:
            self.fake.limit("chat.update", SLACK_UPDATES_PER_MINUTE, 60.0)
        self.questions: dict[tuple[str, str], tuple[str, float]] = {}  # (channel, ts) -> (tag, sent)
        self._identified: float | None = None

    async def start(self, channels: int) -> None:
        self.channel_ids = [f"C{i + 1:05d}" for i in range(channels)]
        await self.fake.start()

    def limits(self, mode: str) -> None:
        """``tier3``: Slack's published limits (``FakeSlack.slack_limits``); ``lenient``:
        ``chat.update`` 10 a second per channel, ``chat.postMessage`` as Slack's."""
        self.fake.unlimit()
        if mode == "tier3":
            self.fake.slack_limits()
        elif mode == "lenient":
            self.fake.slack_limits()
            self.fake.limit("chat.update", *SLACK_LENIENT, per="channel")
        else:
            raise ValueError(f"unknown Slack limits {mode!r}")

    async def stop(self) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return {"SLACK_BOT_TOKEN": "xoxb-fake", "SLACK_APP_TOKEN": "xapp-fake", "SLACK_API_URL": self.fake.api_url}

    async def connected(self) -> float:
        """Wait until the bot's Socket Mode websocket is open; when it was (monotonic)."""
        await self.fake._connected.wait()
        if self._identified is None:
            self._identified = time.monotonic()
        return self._identified

    async def ask(self, tag: str, channel_index: int) -> None:
        channel = self.channel_ids[channel_index]
        event = {**self.fake.say(f"<@{BOT_USER}> q{tag} please explain streaming", channel=channel, user="U1"),
                 "type": "app_mention"}
        body = self.fake.callback(event)
        envelope = {"envelope_id": f"bench-{tag}", "type": "events_api", "accepts_response_payload": False,
                    "retry_attempt": 0, "retry_reason": "", "payload": body}
        sent = time.monotonic()
        self.questions[(channel, event["ts"])] = (tag, sent)
        await self.fake._sockets[-1].send_str(json.dumps(envelope))

    def outcome(self) -> dict[str, Seen]:
        seen: dict[str, Seen] = {}
        by_thread: dict[tuple[str, str], str] = {}
        for (channel, ts), (tag, at) in self.questions.items():
            seen[tag] = Seen(tag, channel, at)
            by_thread[(channel, ts)] = tag
        owner: dict[tuple[str, str], str] = {}  # (channel, message ts) -> tag
        for channel, msgs in self.fake.messages.items():
            for ts, msg in msgs.items():
                tag = by_thread.get((channel, str(msg.get("thread_ts"))))
                if tag is not None and msg.get("user") == BOT_USER:
                    owner[(channel, ts)] = tag
        placeholder = {"_thinking…_", ""}
        for call in self.fake.calls:
            p = call.params
            channel = str(p.get("channel") or p.get("channel_id") or "")
            if call.method in ("chat.postMessage", "chat.startStream", "assistant.threads.setStatus"):
                tag = by_thread.get((channel, str(p.get("thread_ts"))))
            elif call.method in ("chat.update", "chat.appendStream", "chat.stopStream"):
                tag = owner.get((channel, str(p.get("ts"))))
            elif call.method == "reactions.add":  # :eyes: on the question (it roots its reply's thread)
                tag = by_thread.get((channel, str(p.get("timestamp"))))
            else:
                continue
            if tag is None:
                continue
            one = seen[tag]
            if call.status == 429:
                one.limited += 1
                continue
            if call.error is not None:
                continue
            one.first_call_at = min(one.first_call_at or call.at, call.at)
            if call.method in ("assistant.threads.setStatus", "reactions.add"):
                continue
            one.writes += 1
            text = p.get("text") or p.get("markdown_text") or ""
            if one.first_text_at is None and text not in placeholder:
                one.first_text_at = call.at
            one.final_at = call.at
        for (channel, ts), tag in sorted(owner.items(), key=lambda kv: float(kv[0][1])):
            seen[tag].parts.append(self.fake.messages[channel][ts]["text"])
        return seen


DRIVERS: dict[str, type[DiscordDriver] | type[SlackDriver]] = {"discord": DiscordDriver, "slack": SlackDriver}
