"""Turning a screen into the text a feature phone shows: translated, plain ASCII, ≤ 182 chars."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deni.i18n import translate

SCREEN_CHARS_MAX = 182  # the common ceiling across Kenyan networks, prefix included
CON, END = "CON ", "END "
_ELLIPSIS = ".."


@dataclass(frozen=True, slots=True)
class Reply:
    end: bool
    text: str  # without the CON/END prefix
    trimmed: bool = False  # a reason took the room of the screen's first lines (by design)
    truncated: bool = False  # the screen did not fit and was cut (a bug in a text or a flow)

    @property
    def wire(self) -> str:
        return (END if self.end else CON) + self.text

    @classmethod
    def from_wire(cls, wire: str) -> Reply:
        assert wire.startswith((CON, END)), "stored replies are well formed"
        return cls(wire.startswith(END), wire[len(CON) :])


def plain(text: str) -> str:
    """Telcos render GSM-7 only: fold accents, drop emoji and control characters."""
    if text.isascii() and text.replace("\n", "").isprintable():
        return text  # nearly every line: the catalogs are ASCII, and so are names and amounts
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded if c == "\n" or c.isprintable())


def say(message_id: str, language: str, params: Mapping[str, object] | None = None) -> str:
    template = translate(message_id, language, domain="ussd")
    if not params:
        return template
    return template.format_map({k: str(v) for k, v in params.items()})


def compose(*, end: bool, head: Sequence[str], body: str, tail: Sequence[str]) -> Reply:
    """head (a reason or notice), body (the screen's text), tail (options, navigation).

    If it is too long, body lines go first, from the top (a title; the last line is usually
    the question): "trimmed", acceptable when a reason is shown. Then the whole is cut:
    "truncated", a bug. Tests render every screen with the longest data and assert that
    nothing is trimmed without a reason and nothing is ever truncated.
    """
    room = SCREEN_CHARS_MAX - len(CON)
    body_lines = [line for line in plain(body).split("\n") if line]
    head_lines = [plain(line) for line in head if line]
    tail_lines = [plain(line) for line in tail if line]
    text = "\n".join([*head_lines, *body_lines, *tail_lines])
    if len(text) <= room:
        return Reply(end, text)
    for drop in range(1, len(body_lines)):
        text = "\n".join([*head_lines, *body_lines[drop:], *tail_lines])
        if len(text) <= room:
            return Reply(end, text, trimmed=True)
    return Reply(end, text[: room - len(_ELLIPSIS)] + _ELLIPSIS, truncated=True)
