"""The command line: ``serve``, ``ask``, ``chat``, ``doctor``, ``usage`` and ``db copy``.

Settings are loaded once here; every ``RelayError`` that reaches this level
becomes one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, PlatformError, RelayError, StoreUnavailable
from .settings import PROVIDER_NAMES, Settings, load_settings

EXIT_CONFIG = 2


def use_uvloop() -> None:
    """Serve on uvloop when it is installed: the event loop wakes once per streamed token per
    answer, and uvloop's wake-up costs a third of asyncio's (docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llama-relay",
        description="Slack and Discord (and terminal) chat bot for Llama-3.1-70B-Instruct.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run every configured platform (Slack, Discord)")
    ask = sub.add_parser("ask", help="answer one question on stdout")
    ask.add_argument("question", nargs="*", help="the question (read from stdin when omitted)")
    ask.add_argument("--provider", choices=PROVIDER_NAMES, help="use this provider only")
    chat = sub.add_parser("chat", help="a conversation in the terminal, kept in the database")
    chat.add_argument("--session", default="default", help="conversation name (resume it later)")
    chat.add_argument("--provider", choices=PROVIDER_NAMES, help="use this provider only")
    sub.add_parser("doctor", help="check the configuration and reach every provider")
    usage = sub.add_parser("usage", help="tokens and cost from the ledger")
    usage.add_argument("--by", choices=("provider", "user", "channel", "model"), default="provider")
    usage.add_argument("--days", type=float, default=30.0, help="look back this many days")
    db = sub.add_parser("db", help="database tools").add_subparsers(dest="db_command", required=True)
    copy = db.add_parser(
        "copy",
        help="copy a SQLite store into an empty PostgreSQL database",
        description="Copy every table (with its ids) into an empty PostgreSQL database, in one transaction; "
        "refused while a serve holds the SQLite file or when the target already holds data. "
        "The password may also come from PGPASSWORD instead of the URL.",
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user:password@host:port/db")
    copy.add_argument("--from", dest="source", metavar="PATH", help="the SQLite file (default: BOT_DATABASE)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        from .logs import setup_logging

        setup_logging(settings, quiet=args.command in ("ask", "chat", "usage", "doctor", "db"))
        if args.command == "serve":
            use_uvloop()
        return asyncio.run(_run(args, settings))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreUnavailable, PlatformError) as exc:  # the operator runs it: the text for logs, not chat
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RelayError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import terminal

    from .runtime import open_service

    if args.command == "ask":
        question = " ".join(args.question) if args.question else await asyncio.to_thread(sys.stdin.read)
        async with open_service(settings, args.provider) as service:
            _say_notes(await service.window_notes())
            return await terminal.ask(service, question, args.provider)
    if args.command == "chat":
        async with open_service(settings, args.provider) as service:
            _say_notes(await service.window_notes())
            return await terminal.chat(service, args.session, args.provider)
    if args.command == "doctor":
        from .doctor import doctor

        return await doctor(settings)
    if args.command == "usage":
        return await usage(settings, args.by, args.days)
    if args.command == "serve":
        from .serve import serve

        return await serve(settings)
    if args.command == "db":
        return await copy_database(settings, args.source, args.to)
    raise AssertionError(args.command)


def _say_notes(notes: Sequence[str]) -> None:
    """Settings that work but will hurt, on stderr (stdout carries only answers)."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


async def copy_database(settings: Settings, source: str | None, target: str) -> int:
    from . import db_copy

    copied = await db_copy.copy(source or settings.bot_database, target, wait=settings.bot_database_wait)
    print(db_copy.render(copied, target))
    return 0


async def usage(settings: Settings, by: str, days: float) -> int:
    from .db_url import is_postgres
    from .runtime import open_store

    database = str(settings.bot_database)
    path = Path(database)
    if not is_postgres(database) and path.parent.is_dir() and not path.exists():  # a report creates none
        print(f"no usage yet: {database} does not exist (the bot creates it when it first answers)")
        return 0
    store = await open_store(settings)
    since = time.time() - days * 86400
    try:
        totals = await store.usage_totals(by, since=since)
        votes = await store.vote_totals(by, since=since)  # feedback: by provider or model only
    finally:
        await store.close()
    rows = [(by, "requests", "tokens in", "tokens out", "cost (USD)", *(("👍", "👎") if by in FEEDBACK_BY else ()))]
    for t in totals:
        up, down = votes.get(t.key, (0, 0))
        row = (t.key, str(t.requests), str(t.prompt_tokens), str(t.completion_tokens), f"{t.cost_usd:.6f}")
        rows.append((*row, str(up), str(down)) if by in FEEDBACK_BY else row)
    _print_table(rows)
    return 0


#: ``usage --by`` groups that show feedback votes beside tokens and cost
FEEDBACK_BY = ("provider", "model")


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
