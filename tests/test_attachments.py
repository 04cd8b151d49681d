"""The neutral part of attachments: which files are read, how bytes become text, cuts."""

from __future__ import annotations

import pytest

from bot.attachments import cut_middle, decode_text, kind_of, pdf_text
from tests.fakes.files import pdf


@pytest.mark.parametrize(
    ("name", "mime", "kind"),
    [
        ("notes.txt", None, "text"),
        ("README.md", "", "text"),
        ("main.rs", "application/octet-stream", "text"),
        ("export", "text/csv; charset=utf-8", "text"),
        ("data", "application/json", "text"),
        ("Dockerfile", None, "text"),
        ("paper.PDF", None, "pdf"),
        ("scan", "application/pdf", "pdf"),
        ("photo.txt", "image/png", "image"),  # the content type wins over the name
        ("voice.ogg", "audio/ogg", "audio"),
        ("clip.mp4", "video/mp4", "video"),
        ("slides.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation", "binary"),
        ("blob", None, "binary"),
    ],
)
def test_kind_of_a_file(name, mime, kind):
    assert kind_of(name, mime) == kind


def test_bytes_become_text_and_binaries_do_not():
    assert decode_text("\ufeffhé".encode(), truncated=False) == "hé"  # a BOM is dropped
    assert decode_text("hé".encode("utf-16"), truncated=False) == "hé"
    assert decode_text(b"\x00\x01binary", truncated=False) is None
    assert decode_text("hé".encode()[:-1], truncated=True) == "h"  # a character cut by the byte cap


def test_cut_middle_keeps_both_ends_within_the_limit():
    text = "a" * 600 + "b" * 600
    cut, was_cut = cut_middle(text, 1000)
    assert was_cut and cut.startswith("a" * 500) and cut.endswith("b" * 500)
    assert "[… 200 characters cut from the middle of this file …]" in cut
    assert cut_middle("short", 1000) == ("short", False)


def test_pdf_text_layer():
    assert pdf_text(pdf("Hello (PDF) world")) == "Hello (PDF) world"
