"""Builders for tests: register people, fund wallets, make loans. Real service calls only."""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Protocol

from fastapi.testclient import TestClient

from deni.adapters.sms import DatabaseSmsOutbox
from deni.bootstrap import Deni
from deni.domain.loans import Loan
from deni.domain.phone import normalise_msisdn
from deni.domain.users import User
from deni.services import ledger, loans, phone_proof, users
from deni.services.mpesa import payments
from deni.services.ports import Clock, PinHasher, UnitOfWorkFactory

_phones = itertools.count(700_000_001)
_receipts = itertools.count(1)
_sources = itertools.count(1)


class Services(Protocol):
    """What the builders below need: a wired Deni, or a service test's world on fakes."""

    @property
    def uow(self) -> UnitOfWorkFactory: ...

    @property
    def hasher(self) -> PinHasher: ...

    @property
    def clock(self) -> Clock: ...


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def shows_number(number: str, text: str) -> bool:
    """Whether `number` stands alone in `text`, not inside a longer run of letters and digits.

    A log line's microseconds ("09:31:38.105678Z"), a UUID or a hex digest ("…a3817f…") hold
    any four digits now and then, so a plain substring check for a PIN fails at random. A
    UUID's groups stand between hyphens, so UUIDs are taken out before looking.
    """
    without_uuids = _UUID.sub(" ", text)
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(number)}(?![0-9A-Za-z])", without_uuids) is not None


def next_phone() -> str:
    """A fresh valid Safaricom-style number per call: 07XXXXXXXX."""
    return f"0{next(_phones)}"


def next_receipt() -> str:
    return f"TST{next(_receipts):07d}"


def register(
    deni: Services,
    *,
    name: str = "Test User",
    pin: str = "3591",
    language: str = "en",
    phone_proven: bool = True,
) -> User:
    """A member, made through the service as USSD makes one: the number proven unless asked
    otherwise (an account made online before numbers were proven)."""
    return users.register_user(
        deni,
        phone=next_phone(),
        name=name,
        pin=pin,
        language=language,
        phone_proven=phone_proven,
    )


def fund(deni: Services, user: User, amount_cents: int) -> None:
    """Money arriving by M-PESA, through the service function the Daraja callback calls."""
    payments.record_mpesa_payment(
        deni,
        user_id=user.id,
        amount_cents=amount_cents,
        receipt=next_receipt(),
    )


def wallet_cents(deni: Services, user: User) -> int:
    with deni.uow.read_only() as uow:
        return ledger.wallet_balance_cents(uow, user_id=user.id)


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


@dataclass
class ApiUser:
    user: User
    pin: str
    headers: dict[str, str]

    def with_key(self) -> dict[str, str]:
        return {**self.headers, **key()}


def api_user(
    client: TestClient,
    deni: Deni,
    *,
    name: str = "Api User",
    pin: str = "3591",
    language: str = "en",
) -> ApiUser:
    """Register through the API (asking for the code by SMS first) and log in; returns the
    bearer headers."""
    phone = next_phone()
    body = {"phone": phone, "name": name, "pin": pin, "language": language}
    response = client.post(
        "/api/v1/auth/register", json={**body, "code": registration_code(deni, phone)}
    )
    assert response.status_code == 201, response.text
    login = client.post("/api/v1/auth/login", json={"phone": phone, "pin": pin})
    assert login.status_code == 200, login.text
    user = users.get_user(deni, user_id=response.json()["id"])
    return ApiUser(user, pin, {"Authorization": f"Bearer {login.json()['access_token']}"})


def sms_texts(deni: Deni, phone: str) -> list[str]:
    """What the fake SMS gateway "sent" to this number, newest first."""
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    return [m.body for m in deni.sms.messages(phone=normalise_msisdn(phone))]


def sms_code(deni: Deni, phone: str) -> str:
    """The 6-digit code in the newest SMS the fake gateway "sent" to this number (messages
    sent at the same instant have no order: move the clock between them)."""
    texts = sms_texts(deni, phone)
    assert texts, f"no SMS to {phone}"
    codes = re.findall(r"(?<!\d)\d{6}(?!\d)", texts[0])
    assert len(codes) == 1, texts[0]
    return str(codes[0])


def registration_code(deni: Deni, phone: str) -> str:
    """The code that proves `phone`, asked as its person would ask from their own phone (their
    own network address: everyone behind the test client's one address would soon reach the
    per-address limit), read from the SMS. POST /auth/register/code itself is tested in
    tests/api/test_phone_proof_api.py."""
    phone_proof.ask_registration_code(
        deni,
        phone=phone,
        source=f"person-{next(_sources)}",
    )
    return sms_code(deni, phone)


def lend(
    deni: Services,
    *,
    lender: User,
    borrower: User,
    approve_with_pin: str | None,
    principal_cents: int = 100_000,
    fee_cents: int = 5_000,
    term_days: int = 14,
    loan_id: str | None = None,
) -> Loan:
    """A loan request, approved with the lender's PIN unless `approve_with_pin` is None."""
    loan = loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal_cents,
        fee_cents=fee_cents,
        term_days=term_days,
        loan_id=loan_id,
    )
    if approve_with_pin is None:
        return loan
    return loans.approve_loan(
        deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=approve_with_pin,
    )


def with_pin_chosen_before_the_weak_pin_rule(deni: Services, user: User, pin: str) -> None:
    """Give a member a PIN the weak-PIN rule now refuses (1234, say), as a member who chose it
    before the rule holds it: written as its hash, since no use case sets such a PIN."""
    with deni.uow() as uow:
        member = uow.users.lock(user.id)
        assert member is not None
        member.pin_hash = deni.hasher.hash(pin)
        uow.users.save(member, deni.clock.now())
        uow.commit()
