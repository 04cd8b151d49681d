"""Files attached to messages: read the text-like ones into their turn, note the others.

An adapter describes each file of a message as an ``Attachment`` (name, size, type and a
``fetch`` that downloads at most N bytes); the turn carries them.  Once the first platform call
is out, the core reads them here (``Attachments.read``): plain text, Markdown, source code,
logs, CSV, JSON and the text of PDFs (``pypdf``) join their turn's text, each labelled with the
file's name, and then go through the token budget like any other text (``bot.conversation.fit``
cuts the question in the middle when it is too long).  Limits: ``BOT_ATTACHMENT_MAX_FILES`` per
message, ``BOT_ATTACHMENT_MAX_BYTES`` downloaded per file, ``BOT_ATTACHMENT_MAX_CHARS`` of text
per file (cut in the middle beyond), ``BOT_ATTACHMENT_TIMEOUT`` seconds per download.

Images, audio, video and other binaries are not read: the answer gets a short note, and so
does a download that fails or is cut.  Texts read are remembered per file id (a thread asked
again does not download its files again).  A message with its files has its own count-cache key
(``<message id>+files``): the adapters' history readers count the message's own text under the
plain id, and one key per text keeps both counts cached.
"""

from __future__ import annotations

import asyncio
import codecs
import io
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from .errors import RelayError

if TYPE_CHECKING:
    from .conversation import Turn
    from .settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["text", "pdf", "image", "audio", "video", "binary"]

TEXT_SUFFIXES = frozenset(
    """
    txt text md markdown rst adoc org tex log out err csv tsv json jsonl ndjson geojson yaml yml toml ini
    cfg conf properties env xml html htm xhtml css scss less svg py pyi ipynb js mjs cjs ts tsx jsx vue
    svelte java kt kts scala groovy go rs c h cc cpp cxx hpp hh cs fs swift m mm rb php pl pm lua r jl
    dart ex exs erl hrl hs ml mli clj sh bash zsh fish ps1 bat cmd sql graphql proto gradle cmake mk
    make diff patch srt vtt tf hcl nix dockerfile makefile gitignore editorconfig lock
    """.split()
)
TEXT_TYPES = frozenset(
    {
        "application/json", "application/xml", "application/x-yaml", "application/yaml", "application/toml",
        "application/javascript", "application/x-sh", "application/sql", "application/x-ndjson",
        "application/csv", "application/x-python", "application/ld+json",
    }
)
NOT_READ = {
    "image": "I can't read images: the model is text-only",
    "audio": "I can't listen to audio: the model is text-only",
    "video": "I can't watch videos: the model is text-only",
    "binary": "I can only read text files and PDFs",
}
#: how many files are downloaded at once (all messages of a conversation together)
PARALLEL = 4
#: texts remembered by file id
CACHE_FILES = 256
#: the count-cache key of a message with its files: ``<message id>+files``
FILES_KEY = "+files"


class DownloadFailed(RelayError):
    """A file could not be downloaded (the adapter says why, in a few words)."""


@dataclass(frozen=True, slots=True)
class Download:
    data: bytes
    truncated: bool  # the file is longer than the bytes asked for


#: downloads at most ``max_bytes`` of the file; raises ``DownloadFailed``
Fetch = Callable[[int], Awaitable[Download]]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message, as an adapter describes it."""

    id: str  # the platform's file id, unique per file ("slack:F123", "discord:987")
    name: str
    fetch: Fetch
    size: int | None = None  # bytes, when the platform says
    mime: str | None = None  # content type, when the platform says

    @property
    def kind(self) -> Kind:
        return kind_of(self.name, self.mime)


@dataclass(frozen=True, slots=True)
class Read:
    """What a file contributed: its text (None: not read) and a note for the answer."""

    text: str | None
    note: str | None = None


def kind_of(name: str, mime: str | None) -> Kind:
    """Which kind of file this is, from its content type and else its name."""
    mime = (mime or "").split(";", 1)[0].strip().lower()
    path = PurePosixPath(name.lower())
    suffix = path.suffix.lstrip(".") or path.name.lstrip(".")
    if mime == "application/pdf" or suffix == "pdf":
        return "pdf"
    for kind in ("image", "audio", "video"):
        if mime.startswith(f"{kind}/"):
            return kind
    if mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith(("+json", "+xml")) or suffix in TEXT_SUFFIXES:
        return "text"
    return "binary"


def decode_text(data: bytes, truncated: bool) -> str | None:
    """Bytes of a text file as text; None when they do not look like text (a binary)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:8192]:
        return None
    if truncated:  # the last character may be cut in two
        return codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(data, final=False)
    return data.decode("utf-8-sig", errors="replace")


def pdf_text(data: bytes) -> str:
    """The text layer of a PDF, page by page (pypdf; CPU work: run it in a thread)."""
    from pypdf import PdfReader  # imported when a PDF comes: most processes never need it

    reader = PdfReader(io.BytesIO(data))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return "\n\n".join(p for p in pages if p)


def cut_middle(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within ``limit`` characters, its middle cut out (marked) when longer."""
    if len(text) <= limit:
        return text, False
    half = limit // 2
    removed = len(text) - 2 * half
    return f"{text[:half]}\n[… {removed:,} characters cut from the middle of this file …]\n{text[-half:]}", True


def labelled(name: str, text: str) -> str:
    return f"[file: {name}]\n{text}\n[end of file: {name}]"


class Attachments:
    """Reads the files of a conversation's turns within the limits of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.max_files = settings.bot_attachment_max_files
        self.max_bytes = settings.bot_attachment_max_bytes
        self.max_chars = settings.bot_attachment_max_chars
        self.timeout = settings.bot_attachment_timeout
        self._cache: OrderedDict[str, Read] = OrderedDict()
        self._parallel = asyncio.Semaphore(PARALLEL)

    async def read(self, turns: Sequence[Turn]) -> tuple[list[Turn], list[str]]:
        """``turns`` with their files' texts in them, and notes for the answer (the question's files').

        Turns without files come back as they are (no await, no copy of their text)."""
        if not any(t.attachments for t in turns):
            return list(turns), []
        jobs = [self._turn(turn) for turn in turns]
        done = await asyncio.gather(*jobs)
        notes = done[-1][1] if turns and turns[-1].role == "user" else []
        return [turn for turn, _ in done], notes

    async def _turn(self, turn: Turn) -> tuple[Turn, list[str]]:
        if not turn.attachments:
            return turn, []
        files = turn.attachments[: self.max_files] if self.max_files else ()
        reads = await asyncio.gather(*(self._file(f) for f in files))
        notes = [r.note for r in reads if r.note]
        if len(turn.attachments) > len(files):
            notes.append(self._too_many(len(turn.attachments)))
        blocks = [turn.text] if turn.text.strip() else []
        blocks += [labelled(f.name, r.text) for f, r in zip(files, reads, strict=True) if r.text is not None]
        unread = [f.name for f, r in zip(files, reads, strict=True) if r.text is None]
        if unread:  # the model knows they were there (and can say so), without their bytes
            blocks.append("[attached, not readable here: " + ", ".join(unread) + "]")
        text = "\n\n".join(blocks) if any(r.text is not None for r in reads) or turn.text.strip() else ""
        notes = list(dict.fromkeys(notes))
        key = f"{turn.message_id}{FILES_KEY}" if turn.message_id else None
        return replace(turn, text=text, attachments=(), message_id=key), notes

    def _too_many(self, count: int) -> str:
        if not self.max_files:
            return "attached files are not read here"
        return f"only the first {self.max_files} of the {count} files attached were read"

    async def _file(self, file: Attachment) -> Read:
        cached = self._cache.get(file.id)
        if cached is not None:
            self._cache.move_to_end(file.id)
            return cached
        read = await self._load(file)
        if read.text is not None:  # a failure is tried again next time
            self._cache[file.id] = read
            while len(self._cache) > CACHE_FILES:
                self._cache.popitem(last=False)
        return read

    async def _load(self, file: Attachment) -> Read:
        kind = file.kind
        if kind in NOT_READ:
            return Read(None, f"{NOT_READ[kind]} ({file.name})")
        if kind == "pdf" and file.size is not None and file.size > self.max_bytes:
            return Read(None, f"{file.name} is larger than {_size(self.max_bytes)}: not read")
        try:
            async with self._parallel, asyncio.timeout(self.timeout):
                download = await file.fetch(self.max_bytes)
        except TimeoutError:
            return Read(None, f"could not download {file.name}: no answer within {self.timeout:g} s")
        except DownloadFailed as exc:
            log.info("attachment %s: %s", file.id, exc)
            return Read(None, f"could not download {file.name}: {exc.user_message}")
        if kind == "pdf":
            return await self._pdf(file, download)
        text = decode_text(download.data, download.truncated)
        if text is None:
            return Read(None, f"{NOT_READ['binary']} ({file.name})")
        return self._limited(file, text, download.truncated)

    async def _pdf(self, file: Attachment, download: Download) -> Read:
        if download.truncated:
            return Read(None, f"{file.name} is larger than {_size(self.max_bytes)}: not read")
        try:
            text = await asyncio.to_thread(pdf_text, download.data)
        except Exception as exc:  # a damaged or encrypted PDF raises anything: the question still goes
            log.info("attachment %s: no PDF text: %r", file.id, exc)
            return Read(None, f"could not read the PDF {file.name}")
        if not text.strip():
            return Read(None, f"{file.name} has no text to read (a scan?)")
        return self._limited(file, text, False)

    def _limited(self, file: Attachment, text: str, truncated: bool) -> Read:
        note = None
        if truncated:
            text += f"\n[… the rest of {file.name} was not read …]"
            note = f"{file.name} is larger than {_size(self.max_bytes)}: only its beginning was read"
        text, cut = cut_middle(text, self.max_chars)
        if cut:
            note = f"{file.name} is longer than {self.max_chars:,} characters: its middle was cut"
        return Read(text, note)


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} KB"
    return f"{n} bytes"
