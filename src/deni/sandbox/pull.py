"""Pull Transactions: the payments a shortcode received lately, to recover lost confirmations.

Production only at Safaricom (docs/reference-daraja.md): register the shortcode once,
then query a window inside the last 48 hours, one page of rows at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from deni.sandbox import payloads, validation
from deni.sandbox.c2b import msisdn_as_sent
from deni.sandbox.core import Call, Sandbox
from deni.sandbox.formats import EAT
from deni.sandbox.state import Kind, PullRegistration, Transaction
from deni.sandbox.validation import DarajaError, invalid

PULL_PAGE_ROWS = 100
PULL_WINDOW = timedelta(hours=48)
OFFSET_MAX = 1_000_000
REQUEST_TYPES = frozenset({"Pull"})
# Both land in the shortcode's Working Account, so M-PESA lists both as received payments.
LISTED_KINDS = frozenset({Kind.C2B, Kind.STK})
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_DATE_CHARS_MAX = 32
_LOCAL_MOBILE = re.compile(r"^0(7|1)\d{8}$")
_OFFSET = re.compile(r"^[0-9]{1,7}$")


@dataclass(frozen=True)
class PullQuery:
    start: datetime
    end: datetime
    offset: int


def not_registered() -> DarajaError:
    # The sandbox's own choice: Safaricom documents no error for an unregistered shortcode.
    return DarajaError(400, "400.003.01", "Shortcode not registered for Pull")


async def register(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    """The first registration sticks: registering again changes nothing and answers 1001."""
    shortcode = _own_shortcode(sandbox, body)
    validation.one_of(body, "RequestType", REQUEST_TYPES)
    nominated_number = _nominated_number(body)
    callback_url = validation.url(
        body, "CallBackURL", reject_blocked_words=sandbox.config.reject_blocked_url_words
    )
    call.begin("pull_register")
    registrations = sandbox.world.pull_registrations
    already = shortcode in registrations
    if not already:
        registrations[shortcode] = PullRegistration(nominated_number, callback_url)
    return payloads.pull_registered(sandbox.mint.request_id(), shortcode, already=already)


async def query(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    request = parse_query(sandbox, body)
    call.begin("pull")
    rows = [_row(sandbox, transaction) for transaction in _page(sandbox, request)]
    return payloads.pull_page(sandbox.mint.request_id(), rows)


def parse_query(sandbox: Sandbox, body: dict[str, Any]) -> PullQuery:
    if _own_shortcode(sandbox, body) not in sandbox.world.pull_registrations:
        raise not_registered()
    start = _nairobi_date(body, "StartDate")
    end = _nairobi_date(body, "EndDate")
    if start > end:
        raise invalid("EndDate")
    # Production only looks back 48 hours; the wire has whole seconds, so compare to the second.
    if start < (sandbox.now() - PULL_WINDOW).replace(microsecond=0):
        raise invalid("StartDate")
    return PullQuery(start=start, end=end, offset=_offset(body))


def _page(sandbox: Sandbox, request: PullQuery) -> list[Transaction]:
    received = sorted(
        (t for t in sandbox.world.transactions.values() if _listed(t, request)),
        key=lambda t: (t.completed_at, t.transaction_id),
    )
    return received[request.offset : request.offset + PULL_PAGE_ROWS]


def _listed(transaction: Transaction, request: PullQuery) -> bool:
    # Reversed payments are left out: the money went back, so there is nothing to recover.
    if transaction.kind not in LISTED_KINDS or transaction.reversed_by is not None:
        return False
    # Whole seconds, like the dates asked for: EndDate 10:00:00 includes 10:00:00.700.
    completed = transaction.completed_at.replace(microsecond=0)
    return request.start <= completed <= request.end


def _row(sandbox: Sandbox, transaction: Transaction) -> dict[str, Any]:
    return payloads.pull_row(
        transaction,
        # The number as the C2B confirmation shows it (masked or hashed since 2023).
        msisdn=msisdn_as_sent(sandbox, transaction.phone),
        payer=sandbox.world.customer(transaction.phone),
        organisation_name=sandbox.world.organisation.name,
    )


def _own_shortcode(sandbox: Sandbox, body: dict[str, Any]) -> str:
    shortcode = validation.shortcode(body, "ShortCode")
    if shortcode != sandbox.config.shortcode:
        raise invalid("ShortCode")
    return shortcode


def _nominated_number(body: dict[str, Any]) -> str:
    """0722000000 as in Safaricom's sample, or 254722000000; kept in the 254 form."""
    number = validation.text(body, "NominatedNumber", chars_max=12)
    if _LOCAL_MOBILE.match(number):
        number = "254" + number[1:]
    return validation.msisdn({"NominatedNumber": number}, "NominatedNumber")


def _nairobi_date(body: dict[str, Any], field: str) -> datetime:
    """ "2020-08-04 08:36:00", read as Nairobi time."""
    value = validation.text(body, field, chars_max=_DATE_CHARS_MAX)
    try:
        return datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=EAT)
    except ValueError:
        raise invalid(field) from None


def _offset(body: dict[str, Any]) -> int:
    """How many rows to skip: a whole number, as a string ("0") or a JSON number."""
    value = validation.text(body, "OffSetValue", chars_max=7)
    if not _OFFSET.match(value) or int(value) > OFFSET_MAX:
        raise invalid("OffSetValue")
    return int(value)
