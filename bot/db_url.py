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
    scheme, user, password, tail = _split(database)
    head = f"{scheme}://" + (f"{user}:{MASK}@" if password is not None else f"{user}@" if user else "")
    parts = urlsplit(f"{scheme}://{tail}")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return head + urlunsplit(("", parts.netloc, parts.path, query, parts.fragment)).removeprefix("//")


def passwords(database: str) -> list[str]:
    """Every password written in the URL (user part and query), raw and percent-decoded."""
    if not is_postgres(database):
        return []
    scheme, _, password, tail = _split(database)
    found = [password] if password else []
    found += [
        v for k, v in parse_qsl(urlsplit(f"{scheme}://{tail}").query, keep_blank_values=True)
        if k.lower() in _SECRET_PARAMS
    ]
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def _split(database: str) -> tuple[str, str, str | None, str]:
    """(scheme, user, password or None, host and the rest).

    The user part ends at the *last* ``@``: a password someone forgot to percent-encode
    (``pa/ss``, ``a#b``, ``x?y``) must still be found, so it is never shown.
    """
    scheme, _, rest = database.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not at:
        return scheme, "", None, rest
    user, colon, password = userinfo.partition(":")
    return scheme, user, password if colon else None, tail


def scrub(text: str, database: str) -> str:
    """``text`` with the URL redacted and every password of it replaced by ``***``."""
    text = text.replace(database, redact(database))
    for secret in passwords(database):
        text = text.replace(secret, MASK)
    return text
