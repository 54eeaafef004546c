"""Notification texts: catalogs, money and date formatting, rendering."""

from __future__ import annotations

import datetime
import io
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from deni.i18n import (
    LANGUAGES,
    NOTIFICATION_KINDS,
    format_day,
    format_kes,
    render_notification,
    translate,
)
from deni.i18n.catalog import catalog_path

SMS_LIMIT = 160

LONG_NAME = "Wanjiru Nyambura Kamau-Ochieng"  # 30 characters
LONG_DATE = datetime.date(2026, 9, 28)  # "Sept" is the longest en_KE month abbreviation
BIG_CENTS = 25_000_000  # KES 250,000
BIG_ODD_CENTS = 24_999_950  # KES 249,999.50
LOAN_CODE = "DN-7K2Q9XA4B"

# The params each kind is rendered with, as the services will pass them.
PARAMS: dict[str, dict[str, object]] = {
    "loan_requested": {
        "borrower_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "total_cents": BIG_CENTS + BIG_ODD_CENTS // 10,
        "due_date": LONG_DATE,
        "loan_code": LOAN_CODE,
    },
    "loan_approved": {
        "lender_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "due_date": LONG_DATE,
        "loan_code": LOAN_CODE,
    },
    "loan_awaiting_funds": {
        "lender_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "loan_declined": {
        "lender_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "loan_cancelled": {
        "borrower_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "loan_expired": {
        "other_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "loan_disbursed": {
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
        "total_cents": BIG_CENTS + BIG_ODD_CENTS // 10,
        "due_date": LONG_DATE,
    },
    "loan_disbursed_mpesa": {
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
        "total_cents": BIG_CENTS + BIG_ODD_CENTS // 10,
        "due_date": LONG_DATE,
    },
    "repayment_received": {
        "borrower_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "balance_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "repayment_made": {
        "amount_cents": BIG_ODD_CENTS,
        "balance_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "loan_repaid": {"other_name": LONG_NAME, "loan_code": LOAN_CODE},
    "loan_written_off": {
        "lender_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "loan_code": LOAN_CODE,
    },
    "due_soon": {"amount_cents": BIG_ODD_CENTS, "due_date": LONG_DATE, "loan_code": LOAN_CODE},
    "due_today": {"amount_cents": BIG_ODD_CENTS, "loan_code": LOAN_CODE},
    "overdue": {"amount_cents": BIG_ODD_CENTS, "days_overdue": 365, "loan_code": LOAN_CODE},
    "wallet_credited": {
        "amount_cents": BIG_ODD_CENTS,
        "balance_cents": BIG_ODD_CENTS,
        "receipt": "SLK4H7QX2P",
    },
    "pin_locked": {"minutes": 120},
    "pin_locked_remote": {"minutes": 1440},
    "pin_reset_code": {"code": "000000", "minutes": 10},
    "pin_reset": {"hours": 24},
    "phone_code": {"code": "000000", "minutes": 10},
    "phone_code_taken": {"code": "000000", "minutes": 10},
    "payout_failed": {"amount_cents": BIG_ODD_CENTS},
    "lender_reminder": {
        "lender_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "due_date": LONG_DATE,
        "loan_code": LOAN_CODE,
    },
    # Offline sync: the longest mutation name, and a long reject code.
    "sync_rejected": {"action": "mark notification read", "reason_code": "insufficient_funds"},
    "sync_conflict": {"loan_code": LOAN_CODE},
    "loan_request_changed": {
        "borrower_name": LONG_NAME,
        "amount_cents": BIG_ODD_CENTS,
        "total_cents": BIG_CENTS + BIG_ODD_CENTS // 10,
        "due_date": LONG_DATE,
        "loan_code": LOAN_CODE,
    },
}


def _parse(language: str) -> Catalog:
    with catalog_path(language).open("rb") as fileobj:
        return read_po(fileobj, abort_invalid=True)


def _templates(language: str) -> dict[str, str]:
    return {str(message.id): str(message.string) for message in _parse(language) if message.id}


def _field_names(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _exposed_names(params: dict[str, object]) -> set[str]:
    return {name.removesuffix("_cents") for name in params}


def test_params_table_covers_every_kind() -> None:
    assert set(PARAMS) == NOTIFICATION_KINDS
    assert len(LONG_NAME) == 30


# --- catalogs ----------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_po_file_parses_and_compiles_cleanly(language: str) -> None:
    catalog = _parse(language)
    assert catalog.locale is not None
    assert str(catalog.locale) == language
    assert catalog.charset == "utf-8"
    problems = [(message.id, errors) for message, errors in catalog.check() if errors]
    assert problems == []
    assert not any(message.fuzzy for message in catalog if message.id)
    out = io.BytesIO()
    write_mo(out, catalog)  # what `pybabel compile` does
    assert out.getvalue()


# Babel's read_po is lenient (it accepts an unterminated string), so check the syntax too.
_PO_LINE = re.compile(r'^(?:(?:msgctxt|msgid|msgstr) )?"(?:[^"\\]|\\.)*"$')


@pytest.mark.parametrize("language", LANGUAGES)
def test_po_file_lines_are_well_formed(language: str) -> None:
    text = catalog_path(language).read_text(encoding="utf-8")
    bad = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.startswith("#") and not _PO_LINE.match(line)
    ]
    assert bad == []


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext msgfmt not installed")
@pytest.mark.parametrize("language", LANGUAGES)
def test_po_file_passes_msgfmt_check(language: str) -> None:
    msgfmt = shutil.which("msgfmt")
    assert msgfmt is not None
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [msgfmt, "--check", "--output-file=/dev/null", str(catalog_path(language))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_catalogs_hold_the_same_msgids() -> None:
    en, sw = _templates("en"), _templates("sw")
    assert set(en) - set(sw) == set()
    assert set(sw) - set(en) == set()


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_has_exactly_the_notification_kinds(language: str) -> None:
    templates = _templates(language)
    assert set(templates) == NOTIFICATION_KINDS
    assert all(templates.values()), "untranslated (empty) msgstr"


@pytest.mark.parametrize("kind", sorted(NOTIFICATION_KINDS))
@pytest.mark.parametrize("language", LANGUAGES)
def test_template_uses_exactly_the_params_of_its_kind(kind: str, language: str) -> None:
    template = _templates(language)[kind]
    assert _field_names(template) == _exposed_names(PARAMS[kind])


@pytest.mark.parametrize("language", LANGUAGES)
def test_templates_are_ascii_so_sms_keeps_160_chars(language: str) -> None:
    # A single non-GSM character turns the SMS into UCS-2, with only 70 characters.
    for kind, template in _templates(language).items():
        assert template.isascii(), kind


# --- formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "expected"),
    [
        (0, "KES 0"),
        (5, "KES 0.05"),
        (50, "KES 0.50"),
        (1_000_00, "KES 1,000"),
        (125_000, "KES 1,250"),
        (125_050, "KES 1,250.50"),
        (25_000_000_00, "KES 25,000,000"),
        (-5_000, "-KES 50"),
        (-125_050, "-KES 1,250.50"),
        (-5, "-KES 0.05"),
    ],
)
def test_format_kes(cents: int, expected: str) -> None:
    assert format_kes(cents) == expected


@pytest.mark.parametrize("bad", [12.5, True, "100"])
def test_format_kes_rejects_non_int(bad: object) -> None:
    with pytest.raises(TypeError):
        format_kes(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("language", "day", "expected"),
    [
        ("en", datetime.date(2026, 3, 5), "5 Mar 2026"),
        ("sw", datetime.date(2026, 3, 5), "5 Mac 2026"),
        ("en", datetime.date(2026, 9, 28), "28 Sept 2026"),
        ("sw", datetime.date(2026, 8, 1), "1 Ago 2026"),
    ],
)
def test_format_day(language: str, day: datetime.date, expected: str) -> None:
    assert format_day(day, language) == expected


def test_format_day_rejects_datetime() -> None:
    with pytest.raises(TypeError):
        format_day(datetime.datetime(2026, 3, 5, 23, 30, tzinfo=datetime.UTC), "en")


def test_format_day_unknown_language() -> None:
    with pytest.raises(ValueError, match="language"):
        format_day(datetime.date(2026, 3, 5), "fr")


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(NOTIFICATION_KINDS))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_renders_within_one_sms(kind: str, language: str) -> None:
    text = render_notification(kind, language, PARAMS[kind])
    assert "{" not in text
    assert "}" not in text
    assert "_cents" not in text
    assert len(text) <= SMS_LIMIT, f"{len(text)} chars: {text}"
    if "amount_cents" in PARAMS[kind]:
        assert "KES 249,999.50" in text
    if "due_date" in PARAMS[kind]:
        assert format_day(LONG_DATE, language) in text


@pytest.mark.parametrize("kind", sorted(NOTIFICATION_KINDS))
def test_english_and_swahili_differ(kind: str) -> None:
    en = render_notification(kind, "en", PARAMS[kind])
    sw = render_notification(kind, "sw", PARAMS[kind])
    assert en != sw


def test_render_loan_requested_in_english() -> None:
    text = render_notification(
        "loan_requested",
        "en",
        {
            "borrower_name": "Achieng",
            "amount_cents": 500_000,
            "total_cents": 550_050,
            "due_date": datetime.date(2026, 3, 5),
            "loan_code": "DN42",
        },
    )
    assert text == (
        "Achieng asks to borrow KES 5,000, to repay KES 5,500.50 by 5 Mar 2026. "
        "Loan DN42. Approve or decline in Deni."
    )


def test_render_formats_swahili_dates_and_plain_values() -> None:
    text = render_notification(
        "due_soon",
        "sw",
        {"amount_cents": 100, "due_date": datetime.date(2026, 3, 5), "loan_code": "DN42"},
    )
    assert "KES 1 " in text
    assert "5 Mac 2026" in text
    assert "DN42" in text
    assert render_notification("pin_locked", "sw", {"minutes": 30}).count("dakika 30") == 1


def test_unknown_kind_raises_value_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        render_notification("loan_teleported", "en", {})


def test_unknown_language_raises_value_error() -> None:
    with pytest.raises(ValueError, match="language"):
        render_notification("due_today", "fr", PARAMS["due_today"])


def test_missing_param_raises_key_error() -> None:
    with pytest.raises(KeyError):
        render_notification("due_today", "en", {"amount_cents": 100})


def test_cents_param_must_be_int() -> None:
    with pytest.raises(TypeError):
        render_notification("due_today", "en", {"amount_cents": 1.5, "loan_code": "DN42"})


def test_clashing_param_names_raise() -> None:
    with pytest.raises(ValueError, match="clashes"):
        render_notification(
            "due_today", "en", {"amount_cents": 100, "amount": "x", "loan_code": "DN42"}
        )


# --- translate ---------------------------------------------------------------------------


def test_translate_looks_up_the_language() -> None:
    assert translate("pin_locked", "sw").startswith("Akaunti yako ya Deni")
    assert translate("pin_locked", "en").startswith("Your Deni account")


def test_translate_falls_back_to_the_id() -> None:
    assert translate("no_such_message", "sw") == "no_such_message"


def test_translate_unknown_language() -> None:
    with pytest.raises(ValueError, match="language"):
        translate("pin_locked", "fr")


def test_catalog_files_live_inside_the_package() -> None:
    import deni.i18n

    package_dir = Path(deni.i18n.__file__).parent
    for language in LANGUAGES:
        path = catalog_path(language)
        assert path.is_file()
        assert path.relative_to(package_dir).parts[-3:] == (language, "LC_MESSAGES", "messages.po")
