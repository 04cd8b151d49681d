"""What ``BOT_DATABASE`` names, and how to name it without its password.

``BOT_DATABASE`` is either a SQLite file (the default) or a PostgreSQL URL,
``postgresql://user:password@host:port/db`` (``postgres://`` too).  Wherever the
database is named — logs, errors, ``doctor``, ``/healthz`` — it is named through
``redact``: the password (in the user part or a ``password=`` query parameter)
becomes ``***``.  ``scrub`` removes a password from any other text (a library's
error message) before it is shown.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
MASK = "***"
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def is_postgres(database: str) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` URL; anything else is a SQLite path."""
    scheme, sep, _ = database.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def redact(database: str) -> str:
    """The database as it may be shown: ``postgresql://user:***@host:5432/db``; a path as it is."""
    if not is_postgres(database):
        return database
    parts = urlsplit(database)
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def passwords(database: str) -> list[str]:
    """Every password written in the URL (user part and query), raw and percent-decoded."""
    if not is_postgres(database):
        return []
    parts = urlsplit(database)
    found = []
    raw_user = parts.netloc.rpartition("@")[0]
    if ":" in raw_user:
        found.append(raw_user.split(":", 1)[1])
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() in _SECRET_PARAMS]
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def scrub(text: str, database: str) -> str:
    """``text`` with the URL redacted and every password of it replaced by ``***``."""
    text = text.replace(database, redact(database))
    for secret in passwords(database):
        text = text.replace(secret, MASK)
    return text
