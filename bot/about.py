"""Questions about a message (message actions): the words the model reads, the same on every platform.

A person picks a message ("Ask about this message", Slack's message shortcut) and maybe types a
question; ``question_about`` makes the text of that user turn: the question first, then the
message, labelled with its author like an attached file (``bot.attachments.labelled``).  An empty
question asks to explain the message.  ``SUMMARIZE`` is the request that ends a conversation to
summarise (Discord's "Summarize this conversation").
"""

from __future__ import annotations

#: what an empty question asks
EXPLAIN = "Explain this message."
#: the last user turn of "Summarize this conversation"
SUMMARIZE = (
    "Summarize the conversation above: the main points, what was decided and what is still open. "
    "Be brief."
)
#: how a message without text (only files, or an embed) reads
NO_TEXT = "(no text)"


def question_about(question: str, text: str, author: str | None) -> str:
    """The user turn's text: ``question`` (or "explain this message") and the message it is about."""
    asked = question.strip() or EXPLAIN
    who = f" from {author}" if author else ""
    body = text.strip() or NO_TEXT
    return f"{asked}\n\n[message{who}]\n{body}\n[end of message]"


def shown_question(question: str) -> str:
    """The question as the answer's header shows it."""
    return question.strip() or EXPLAIN
