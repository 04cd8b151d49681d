"""Files shared in Slack messages (``files[]``) as the core's ``Attachment``s.

Each file is downloaded from its ``url_private_download`` with the bot token (the app needs the
``files:read`` scope), bounded in bytes (``adapters.downloads``).  The token goes only to Slack:
to ``*.slack.com`` over HTTPS, or to the host of ``SLACK_API_URL`` (a local Slack in tests); a
file whose URL points anywhere else is not downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from bot.attachments import Attachment, Download, DownloadFailed

from ..downloads import download

#: Why a download Slack answers with its sign-in page failed: the token may not read files.
SIGN_IN = "Slack sent its sign-in page instead (does the app have the files:read scope? reinstall it after adding one)"
#: ``mode`` of a file Slack no longer has (deleted) or only links to
SKIPPED_MODES = frozenset({"tombstone"})


class SlackFiles:
    def __init__(self, token: str, api_url: str) -> None:
        self._token = token
        self._api_host = urlsplit(api_url).netloc

    def of(self, message: Mapping[str, Any]) -> tuple[Attachment, ...]:
        """The files of a message (or event), in their order."""
        files = message.get("files")
        if not isinstance(files, Sequence) or isinstance(files, str):
            return ()
        return tuple(self._one(f) for f in files if isinstance(f, Mapping) and f.get("mode") not in SKIPPED_MODES)

    def _one(self, file: Mapping[str, Any]) -> Attachment:
        file_id = str(file.get("id") or "")
        name = str(file.get("name") or file.get("title") or file_id or "file")
        url = file.get("url_private_download") or file.get("url_private")
        size = file.get("size")

        async def fetch(max_bytes: int) -> Download:
            if not isinstance(url, str) or not url:
                raise DownloadFailed("Slack did not share it with the bot")
            if not self._trusted(url):
                raise DownloadFailed("it is not hosted by Slack")
            headers = {"Authorization": f"Bearer {self._token}"}
            return await download(url, max_bytes, headers, redirected=SIGN_IN)

        return Attachment(
            id=f"slack:{file_id or url}",
            name=name,
            fetch=fetch,
            size=size if isinstance(size, int) else None,
            mime=file.get("mimetype") if isinstance(file.get("mimetype"), str) else None,
        )

    def _trusted(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.netloc == self._api_host:
            return True
        host = parts.hostname or ""
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))
