"""C2B: URL registration, Daraja's simulate endpoint, and a customer paying the paybill."""

from __future__ import annotations

from typing import Any

from deni.sandbox import formats, payloads, validation
from deni.sandbox.core import Call, Sandbox
from deni.sandbox.faults import DeliveryPolicy
from deni.sandbox.state import C2bRegistration, Customer, Kind, Transaction
from deni.sandbox.validation import invalid

RESPONSE_TYPES = frozenset({"Completed", "Cancelled"})
SIMULATE_COMMANDS = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})
_BILL_REF_CHARS_MAX = 20
_ACCEPTED_CODES = ("0", "00000000")


async def register_url(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    """The sandbox lets you register again at will (production does not)."""
    blocked = sandbox.config.reject_blocked_url_words
    if validation.shortcode(body, "ShortCode") != sandbox.config.shortcode:
        raise invalid("ShortCode")
    response_type = validation.one_of(body, "ResponseType", RESPONSE_TYPES)
    confirmation_url = validation.url(body, "ConfirmationURL", reject_blocked_words=blocked)
    validation_url = ""
    if body.get("ValidationURL"):
        validation_url = validation.url(body, "ValidationURL", reject_blocked_words=blocked)
    call.begin("c2b_register")
    sandbox.world.registrations[sandbox.config.shortcode] = C2bRegistration(
        response_type=response_type,
        confirmation_url=confirmation_url,
        validation_url=validation_url,
    )
    return payloads.c2b_accepted(sandbox.mint.request_id(), "Success")


async def simulate(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    if validation.shortcode(body, "ShortCode") != sandbox.config.shortcode:
        raise invalid("ShortCode")
    validation.one_of(body, "CommandID", SIMULATE_COMMANDS)
    amount_cents = validation.amount_cents(body)
    phone = validation.msisdn(body, "Msisdn")
    bill_ref = validation.text(
        body, "BillRefNumber", chars_max=_BILL_REF_CHARS_MAX, chars_min=0, required=False
    )
    faults = call.begin("c2b", phone)

    async def pay_later() -> None:
        await pay(sandbox, phone, amount_cents, bill_ref, faults.delivery)

    sandbox.schedule(pay_later)
    return payloads.c2b_accepted(sandbox.mint.request_id(), payloads.ACCEPTED)


async def pay(
    sandbox: Sandbox, phone: str, amount_cents: int, bill_ref: str, policy: DeliveryPolicy
) -> dict[str, Any]:
    """A customer pays the paybill: validation (if registered), the money, the confirmation.

    Returns what the customer would see, for the admin API.
    """
    assert amount_cents > 0
    now = sandbox.now()
    transaction_id = sandbox.mint.receipt(now)
    payer = sandbox.world.customer(phone)
    if payer.balance_cents < amount_cents:
        return {"status": "failed", "TransID": None, "ResultCode": 1}
    registration = sandbox.world.registrations.get(sandbox.config.shortcode)

    def notice(org_balance: str, third_party_id: str) -> dict[str, Any]:
        return payloads.c2b_notice(
            transaction_id=transaction_id,
            trans_time=formats.compact_time(now),
            amount_cents=amount_cents,
            shortcode=sandbox.config.shortcode,
            bill_ref=bill_ref,
            msisdn=msisdn_as_sent(sandbox, phone),
            payer=payer,
            org_balance=org_balance,
            third_party_id=third_party_id,
        )

    third_party_id = ""
    if registration is not None and registration.validation_url:
        verdict, third_party_id = await _validate(sandbox, registration, notice("", ""))
        if verdict != "0":
            return {"status": "rejected", "TransID": None, "ResultCode": verdict}
    if not sandbox.world.pay_organisation(phone, amount_cents):
        return {"status": "failed", "TransID": None, "ResultCode": 1}
    _record(sandbox, transaction_id, payer, amount_cents, bill_ref)
    if registration is not None:
        balance = formats.decimal_shillings(sandbox.world.organisation.working_cents)
        body = notice(balance, third_party_id)
        sandbox.dispatcher.send("c2b_confirmation", registration.confirmation_url, body, policy)
    return {"status": "completed", "TransID": transaction_id, "ResultCode": 0}


async def _validate(
    sandbox: Sandbox, registration: C2bRegistration, body: dict[str, Any]
) -> tuple[str, str]:
    """Ask the ValidationURL. Returns ("0", ThirdPartyTransID) to accept, else the reject code.

    No usable answer in time: the registered ResponseType decides, as on M-PESA.
    """
    record, answer = await sandbox.dispatcher.call_now(
        "c2b_validation",
        registration.validation_url,
        body,
        sandbox.config.c2b_validation_timeout_s,
    )
    answered = record.response_status is not None and 200 <= record.response_status < 300
    if not answered or not isinstance(answer, dict) or "ResultCode" not in answer:
        fallback = "0" if registration.response_type == "Completed" else "C2B00016"
        return fallback, ""
    code = str(answer["ResultCode"])
    third_party_id = str(answer.get("ThirdPartyTransID") or "")
    return ("0", third_party_id) if code in _ACCEPTED_CODES else (code, "")


def msisdn_as_sent(sandbox: Sandbox, phone: str) -> str:
    style = sandbox.config.c2b_msisdn_style
    if style == "masked":
        return formats.mask_msisdn(phone)
    if style == "hashed":
        return formats.hash_msisdn(phone)
    return phone


def _record(
    sandbox: Sandbox, transaction_id: str, payer: Customer, amount_cents: int, bill_ref: str
) -> None:
    now = sandbox.now()
    sandbox.world.record(
        Transaction(
            transaction_id=transaction_id,
            kind=Kind.C2B,
            amount_cents=amount_cents,
            phone=payer.phone,
            debit_party=payer.public_name,
            credit_party=sandbox.world.organisation.public_name,
            initiated_at=now,
            completed_at=now,
            conversation_id=sandbox.mint.conversation_id(now),
            originator_conversation_id=sandbox.mint.request_id(),
            reference=bill_ref,
        )
    )
