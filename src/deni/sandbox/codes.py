"""Daraja's result codes and the test phone numbers that trigger them.

Result codes and texts are Safaricom's (docs/reference-daraja.md, STK push to Reversal). A test
phone number ends in the code it triggers, so a test reads like the outcome it expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    """What M-PESA does with a request that reaches it."""

    RESULT = "result"  # settle (or fail) and send the result callback
    TIMEOUT_SILENT = "timeout_silent"  # the money moves, no callback ever comes
    TIMEOUT_QUEUE = "timeout_queue"  # the money moves, QueueTimeOutURL hears "timed out"


SUCCESS_DESC = "The service request is processed successfully."

STK_RESULTS: dict[int, str] = {
    0: SUCCESS_DESC,
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    17: "Rule limited.",
    1001: "Unable to lock subscriber, a transaction is already in process for the current "
    "subscriber.",
    1019: "Transaction has expired.",
    1025: "An error occurred while sending a push request.",
    1032: "Request cancelled by user",
    1036: "SMSC ACK timeout.",
    1037: "DS timeout user cannot be reached",
    2001: "The initiator information is invalid.",
    2028: "The request is not permitted according to product assignment.",
}

B2C_RESULTS: dict[int, str] = {
    0: SUCCESS_DESC,
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    8: "Declined due to limit rule: would exceed the maximum balance.",
    17: "System internal error.",
    2001: "The initiator information is invalid.",
    2040: "Credit Party customer type (Unregistered or Registered Customer) can't be supported "
    "by the service.",
    8006: "The security credential is locked.",
}

# Reversal result codes (docs/reference-daraja.md, "Reversal"): 0, R000001, R000002 and the
# initiator API codes Safaricom lists for it. The "R" codes travel as strings.
REVERSAL_RESULTS: dict[int | str, str] = {
    0: SUCCESS_DESC,
    1: "The balance is insufficient for the transaction.",
    11: "The DebitParty is in an invalid state.",
    21: "The initiator is not allowed to initiate this request.",
    2001: "The initiator information is invalid.",
    2006: "Declined due to account rule.",
    2028: "The request is not permitted according to product assignment.",
    8006: "The security credential is locked.",
    "R000001": "The transaction has already been reversed.",
    "R000002": "The OriginalTransactionID is invalid.",
}

QUEUE_TIMEOUT = (1, "The service request has timed out.")
REVERSAL_ALREADY_REVERSED = ("R000001", REVERSAL_RESULTS["R000001"])
REVERSAL_INVALID_ID = ("R000002", REVERSAL_RESULTS["R000002"])
# Not sourced: Safaricom publishes no "unknown transaction" code for Transaction Status; we
# reuse the reversal API's "invalid id" code so that it is at least a real M-PESA code.
STATUS_NOT_FOUND = REVERSAL_INVALID_ID
INITIATOR_INVALID = (2001, "The initiator information is invalid.")


@dataclass(frozen=True)
class Magic:
    """What a test phone number does: an STK result, a B2C result, or a timeout."""

    stk_code: int | None = None
    b2c_code: int | None = None
    outcome: Outcome = Outcome.RESULT


MAGIC_NUMBERS: dict[str, Magic] = {
    "254700000001": Magic(stk_code=1, b2c_code=1),
    "254700001001": Magic(stk_code=1001),
    "254700001019": Magic(stk_code=1019),
    "254700001032": Magic(stk_code=1032),
    "254700001036": Magic(stk_code=1036),
    "254700001037": Magic(stk_code=1037),
    "254700002001": Magic(stk_code=2001, b2c_code=2001),
    "254700002040": Magic(b2c_code=2040),
    "254700008006": Magic(b2c_code=8006),
    "254700000408": Magic(outcome=Outcome.TIMEOUT_SILENT),
    "254700000504": Magic(outcome=Outcome.TIMEOUT_QUEUE),
}


def magic_for(phone: str) -> Magic:
    return MAGIC_NUMBERS.get(phone, Magic())


ResultCode = int | str


def normalise_code(code: ResultCode) -> ResultCode:
    """Numeric codes travel as numbers in callbacks; "R000001" and "C2B00012" stay strings."""
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return code


def stk_desc(code: ResultCode) -> str:
    found = STK_RESULTS.get(code) if isinstance(code, int) else None
    return found or "Internal error"


def b2c_desc(code: ResultCode) -> str:
    found = B2C_RESULTS.get(code) if isinstance(code, int) else None
    return found or "System internal error."


def reversal_desc(code: ResultCode) -> str:
    return REVERSAL_RESULTS.get(code) or "System internal error."
