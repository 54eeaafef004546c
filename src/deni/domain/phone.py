"""Kenyan mobile numbers, normalised to the 2547XXXXXXXX / 2541XXXXXXXX form Daraja uses."""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import carrier

from deni.domain.errors import InvalidPhoneNumber, NotOnMpesa

_SEPARATORS = re.compile(r"[\s\-().]")
_INPUT_CHARS_MAX = 32
_NORMALISED = re.compile(r"^254[17]\d{8}$")
# Only ASCII digits after an optional "+": phonenumbers would otherwise read letters as keypad
# digits (07123ABCDE dials someone else) and drop extensions ("x12", ";ext=1") silently.
_DIGITS_ONLY = re.compile(r"\+?[0-9]+")


def normalise_msisdn(raw: object) -> str:
    """Accept 0712…, +254712…, 254712…, 0112… (with spaces or dashes); return 2547…/2541…."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > _INPUT_CHARS_MAX:
        raise InvalidPhoneNumber("Give a Kenyan mobile number such as 0712 345 678.")
    compact = _SEPARATORS.sub("", raw.strip())
    if not _DIGITS_ONLY.fullmatch(compact):
        raise InvalidPhoneNumber("A phone number is digits only, such as 0712 345 678.")
    return _normalised(compact)


# Parsing with phonenumbers is the costly part, and the same few numbers come back again and
# again (a lender's phone in every request of a sync push). Refusals raise, so are not cached.
@functools.lru_cache(maxsize=4096)
def _normalised(compact: str) -> str:
    if compact.startswith("254") and not compact.startswith("+"):
        compact = "+" + compact
    try:
        parsed = phonenumbers.parse(compact, "KE")
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber("That is not a phone number.") from error
    if parsed.country_code != 254:
        raise InvalidPhoneNumber("Only Kenyan (+254) mobile numbers can use Deni.")
    mobile_types = (phonenumbers.PhoneNumberType.MOBILE,)
    if not phonenumbers.is_valid_number(parsed) or (
        phonenumbers.number_type(parsed) not in mobile_types
    ):
        raise InvalidPhoneNumber("That is not a valid Kenyan mobile number.")
    msisdn = f"254{parsed.national_number}"
    if not _NORMALISED.match(msisdn):
        raise InvalidPhoneNumber("That is not a valid Kenyan mobile number.")
    return msisdn


def mask_msisdn(msisdn: str) -> str:
    """Show enough of a number for people to recognise it, and no more: 2547******78."""
    return msisdn[:4] + "*" * max(len(msisdn) - 6, 0) + msisdn[-2:]


# M-PESA is Safaricom's: a number that Kenya's numbering plan gives to another network (Airtel,
# Telkom) cannot pay or be paid by M-PESA. A number whose network is not known (a new range) is
# let through; M-PESA itself then says no.
MPESA_NETWORK = "Safaricom"


def network_of(msisdn: str) -> str:
    """The mobile network a normalised number belongs to by its range, or "" if unknown."""
    assert _NORMALISED.match(msisdn), msisdn
    name: str = carrier.name_for_number(phonenumbers.parse("+" + msisdn), "en")
    return name


def require_mpesa_number(msisdn: str) -> None:
    """Where M-PESA must move money to or from the member's number: Safaricom only."""
    network = network_of(msisdn)
    if network and network != MPESA_NETWORK:
        local = "0" + msisdn[3:]
        raise NotOnMpesa(
            f"M-PESA works only with Safaricom numbers, and {local} is on {network}. "
            "Pay into Deni from a Safaricom line, or open Deni with your Safaricom number."
        )
