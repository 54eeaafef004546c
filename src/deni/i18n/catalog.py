"""English and Swahili notification texts, read from gettext catalogs with Babel.

Each catalog lives at ``locale/<language>/LC_MESSAGES/messages.po`` next to this module.
For notifications the msgid is the notification kind (for example ``"loan_requested"``)
and the msgstr is a :meth:`str.format` template with named fields.  The ``.po`` files
are parsed once per process; no ``.mo`` compile step is needed at runtime.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from babel.dates import format_date
from babel.messages.pofile import read_po

from deni.domain import money

__all__ = [
    "LANGUAGES",
    "NOTIFICATION_KINDS",
    "format_day",
    "format_kes",
    "load_all",
    "render_notification",
    "translate",
]

LANGUAGES: tuple[str, ...] = ("en", "sw")
"""Supported languages; the first one is the fallback."""

NOTIFICATION_KINDS: frozenset[str] = frozenset(
    {
        "loan_requested",
        "loan_approved",
        "loan_awaiting_funds",
        "loan_declined",
        "loan_cancelled",
        "loan_expired",
        "loan_disbursed",
        "loan_disbursed_mpesa",
        "repayment_received",
        "repayment_made",
        "loan_repaid",
        "loan_written_off",
        "due_soon",
        "due_today",
        "overdue",
        "wallet_credited",
        "pin_locked",
        "pin_locked_remote",
        "pin_reset_code",  # sent by SMS at once, never stored (the code is a secret)
        "pin_reset",
        "phone_code",  # sent by SMS at once, never stored (the code is a secret)
        "phone_code_taken",  # the same, to a number an unproven account holds
        "lender_reminder",
        "payout_failed",
        "sync_rejected",
        "sync_conflict",
        "loan_request_changed",
    }
)

DOMAINS: tuple[str, ...] = ("messages", "ussd")
"""Catalog files per language: notifications (``messages.po``) and USSD screens (``ussd.po``)."""

_FALLBACK_LANGUAGE = LANGUAGES[0]
_BABEL_LOCALES: Mapping[str, str] = MappingProxyType({"en": "en_KE", "sw": "sw_KE"})
_LOCALE_DIR = Path(__file__).resolve().parent / "locale"
_CENTS_SUFFIX = "_cents"


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")


def catalog_path(language: str, domain: str = "messages") -> Path:
    """Path of the ``.po`` file for ``language`` (and ``domain``)."""
    _check_language(language)
    if domain not in DOMAINS:
        raise ValueError(f"unknown catalog domain {domain!r}")
    return _LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"


@functools.cache
def _messages(language: str, domain: str = "messages") -> Mapping[str, str]:
    """Parse the catalog for ``language`` into ``{msgid: msgstr}``.

    Like ``msgfmt``, fuzzy and untranslated (empty) entries are skipped, and so are plural
    entries, which this module does not use.
    """
    with catalog_path(language, domain).open("rb") as fileobj:
        catalog = read_po(fileobj, locale=_BABEL_LOCALES[language], abort_invalid=True)
    messages: dict[str, str] = {}
    for message in catalog:
        if (
            isinstance(message.id, str)
            and message.id
            and isinstance(message.string, str)
            and message.string
            and not message.fuzzy
        ):
            messages[message.id] = message.string
    return MappingProxyType(messages)


def format_kes(amount_cents: int) -> str:
    """Format an amount in cents as Kenya shillings, the same in every language.

    ``125_000`` -> ``"KES 1,250"``, ``125_050`` -> ``"KES 1,250.50"``, ``-5_000`` -> ``"-KES 50"``.
    """
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise TypeError(f"amount_cents must be an int, got {type(amount_cents).__name__}")
    return money.format_kes(amount_cents)


def format_day(day: datetime.date, language: str) -> str:
    """Format a calendar day as Babel's medium date for Kenya, e.g. ``"5 Mar 2026"``."""
    _check_language(language)
    if isinstance(day, datetime.datetime):
        # A datetime's calendar day depends on its time zone; make the caller decide.
        raise TypeError("format_day takes a date; convert datetimes to a Nairobi date first")
    return _medium_date(day, language)


# Babel re-reads its locale data on every call; notifications name few distinct days.
@functools.lru_cache(maxsize=4096)
def _medium_date(day: datetime.date, language: str) -> str:
    return str(format_date(day, format="medium", locale=_BABEL_LOCALES[language]))


def load_all() -> None:
    """Read every catalog and Babel's locale data now, at start-up, instead of in the first
    request that renders a text (Babel's first date alone takes ~0.2 s)."""
    for language in LANGUAGES:
        for domain in DOMAINS:
            _messages(language, domain)
        format_date(datetime.date(2000, 1, 1), format="medium", locale=_BABEL_LOCALES[language])


def translate(message_id: str, language: str, *, domain: str = "messages") -> str:
    """Look up ``message_id`` in ``language``, falling back to English, then to the id itself."""
    _check_language(language)
    for lang in (language, _FALLBACK_LANGUAGE):
        text = _messages(lang, domain).get(message_id)
        if text is not None:
            return text
    return message_id


def _format_params(params: Mapping[str, object], language: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in params.items():
        if name.endswith(_CENTS_SUFFIX):
            field = name.removesuffix(_CENTS_SUFFIX)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int number of cents")
            text = format_kes(value)
        elif isinstance(value, datetime.date):
            field, text = name, format_day(value, language)
        else:
            field, text = name, str(value)
        if field in fields:
            raise ValueError(f"parameter {name!r} clashes with another parameter named {field!r}")
        fields[field] = text
    return fields


def render_notification(kind: str, language: str, params: Mapping[str, object]) -> str:
    """Render the notification ``kind`` in ``language`` with ``params``.

    Params named ``*_cents`` are formatted with :func:`format_kes` and exposed without the
    suffix (``amount_cents`` -> ``{amount}``); dates are formatted with :func:`format_day`;
    anything else with :func:`str`.  An unknown kind or language raises :class:`ValueError`;
    a param the template needs but ``params`` lacks raises :class:`KeyError`.
    """
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    _check_language(language)
    template = translate(kind, language)
    if template == kind:
        raise LookupError(f"no text for notification kind {kind!r} in any catalog")
    return template.format_map(_format_params(params, language))
