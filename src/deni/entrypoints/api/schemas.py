"""The API's wire format (pydantic). Amounts are integer cents; strict ints refuse 10.5 and "10"."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from deni.domain.money import format_kes
from deni.domain.users import User
from deni.services.book import BorrowerHistory, Figures, HistoryLine, LenderBook
from deni.services.notifications import IDS_PER_MARK_MAX
from deni.services.ports import NotificationRecord, StatementLine
from deni.services.queries import LoanDetail, LoanView

Cents = Annotated[StrictInt, Field(description="Integer cents (KES 1 = 100).")]


def refuse_nul(value: str) -> str:
    # PostgreSQL cannot store or even compare a string holding NUL: without this check an id
    # such as "\u0000" would reach a query and fail there (a 500 instead of a 422).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Id = Annotated[StrictStr, Field(max_length=64), AfterValidator(refuse_nul)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class RegisterIn(Strict):
    phone: StrictStr = Field(examples=["0712345678"])
    code: StrictStr | None = Field(
        default=None,
        max_length=12,
        examples=["493021"],
        description="The 6 digits sent by SMS (POST /auth/register/code); without it the "
        "answer is 422 phone_code_required.",
    )
    name: StrictStr = Field(examples=["Wanjiku Kamau"])
    pin: StrictStr = Field(examples=["4821"], description="Exactly 4 digits.")
    language: Literal["en", "sw"] = "en"


class RegisterCodeIn(Strict):
    phone: StrictStr = Field(max_length=40, examples=["0712345678"])
    language: Literal["en", "sw"] = Field(default="en", description="The SMS's language.")


class PhoneConfirmIn(Strict):
    code: StrictStr = Field(max_length=12, description="The 6 digits from the SMS.")


class LoginIn(Strict):
    phone: StrictStr
    pin: StrictStr


class RefreshIn(Strict):
    refresh_token: StrictStr = Field(max_length=200)


class ChangePinIn(Strict):
    old_pin: StrictStr
    new_pin: StrictStr


class ProfileIn(Strict):
    name: StrictStr | None = Field(default=None, description="2 to 60 printable characters.")
    language: StrictStr | None = Field(default=None, examples=["sw"], description="en or sw.")


class PinIn(Strict):
    pin: StrictStr


class PasskeyAnswerIn(Strict):
    """A passkey's answer to a challenge from POST /me/passkeys/approval: the challenge's id
    and what the browser's `PublicKeyCredential.toJSON()` gave."""

    challenge_id: Id
    credential: dict[str, Any] = Field(
        description="The PublicKeyCredential as JSON (id, rawId, type, response{...})."
    )


class ProvedIn(Strict):
    """Money out at the member's word: proved with the PIN, or with a passkey whose challenge
    named this very action and amount. Exactly one of the two. Neither is part of what an
    Idempotency-Key is matched against."""

    pin: StrictStr | None = Field(default=None, examples=["4821"])
    passkey: PasskeyAnswerIn | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_proof(self) -> ProvedIn:
        if (self.pin is None) == (self.passkey is None):
            raise ValueError("send either your PIN or a passkey's answer")
        return self


LOAN_VERSION_MAX = 2**31 - 1


class ApproveIn(ProvedIn):
    base_version: StrictInt | None = Field(
        default=None,
        ge=0,
        le=LOAN_VERSION_MAX,
        description="The loan's `version` you showed the lender. If the borrower changed the "
        "request since, the approval is refused (`409 loan_changed`) and nothing moves.",
    )


class PinResetIn(Strict):
    phone: StrictStr = Field(max_length=40, examples=["0712345678"])


class PinResetConfirmIn(Strict):
    phone: StrictStr = Field(max_length=40)
    code: StrictStr = Field(max_length=12, description="The 6 digits from the SMS.")
    new_pin: StrictStr


class MessageOut(BaseModel):
    message: str


class EmptyIn(Strict):
    pass


class EmptyOut(BaseModel):
    ok: bool = True


class SessionOut(BaseModel):
    user_id: str
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    refresh_token: str


class UserOut(BaseModel):
    id: str
    phone: str
    name: str
    language: str
    created_at: datetime
    phone_proven: bool = Field(
        description="False for an account made online before numbers were proven by SMS "
        "code: it may not lend or borrow until POST /me/phone/confirm (403 phone_not_proven)."
    )

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            phone=user.phone,
            name=user.name,
            language=user.language,
            created_at=user.created_at,
            phone_proven=user.phone_proven,
        )


ARRIVING = (
    "Money an M-PESA callback says is on its way that M-PESA has not confirmed yet: not in "
    "the balance, and not spendable until it is."
)


class MeOut(UserOut):
    balance_cents: int
    balance: str
    arriving_cents: int = Field(default=0, description=ARRIVING)


class BalanceOut(BaseModel):
    balance_cents: int
    balance: str
    arriving_cents: int = Field(default=0, description=ARRIVING)

    @classmethod
    def of(cls, balance_cents: int, arriving_cents: int = 0) -> BalanceOut:
        return cls(
            balance_cents=balance_cents,
            balance=format_kes(balance_cents),
            arriving_cents=arriving_cents,
        )


class ArrivingOut(BaseModel):
    receipt: str = Field(description="The M-PESA receipt the callback named.")
    amount_cents: int
    since: datetime = Field(description="When the callback came.")


class StatementLineOut(BaseModel):
    id: int
    entry_id: str
    kind: str
    amount_cents: int
    balance_after_cents: int
    reference: str
    mpesa_receipt: str | None = Field(
        description="The M-PESA receipt number behind this line, where there is one."
    )
    loan_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, line: StatementLine) -> StatementLineOut:
        return cls(
            id=line.posting_id,
            entry_id=line.entry_id,
            kind=line.code,
            amount_cents=line.amount_cents,
            balance_after_cents=line.balance_after_cents,
            reference=line.memo,
            mpesa_receipt=line.mpesa_receipt,
            loan_id=line.cause_id if line.cause_type == "loan" else None,
            created_at=line.created_at,
        )


class StatementOut(BaseModel):
    balance_cents: int
    lines: list[StatementLineOut]
    next_cursor: int | None
    arriving: list[ArrivingOut] = Field(default_factory=list, description=ARRIVING)


class TermsIn(Strict):
    principal_cents: Cents
    fee_cents: Cents = 0
    penalty_daily_cents: Cents = Field(default=0, description="Late penalty per day overdue.")
    due_date: date | None = None
    term_days: StrictInt | None = None


class LoanRequestIn(TermsIn):
    lender_phone: StrictStr
    loan_id: UUID | None = Field(
        default=None, description="Client-generated UUID (offline clients)."
    )


class QuoteOut(BaseModel):
    principal_cents: int
    fee_cents: int
    total_cents: int
    due_date: date
    term_days: int
    penalty_daily_cents: int
    penalty_max_cents: int
    summary: str


class RepayIn(Strict):
    amount_cents: Cents


class WriteOffIn(ProvedIn):
    pass


class PinnedAmountIn(ProvedIn):
    """Money that leaves the wallet at the member's word: the amount, proved with the PIN or a
    passkey."""

    amount_cents: Cents

    def without_pin(self) -> RepayIn:
        """What an Idempotency-Key is matched against: the request, never the PIN."""
        return RepayIn(amount_cents=self.amount_cents)


class PartyOut(BaseModel):
    name: str
    phone: str


class OwedOut(BaseModel):
    penalty_cents: int
    fee_cents: int
    principal_cents: int
    total_cents: int


class LoanOut(BaseModel):
    id: str
    code: str
    state: str
    overdue: bool
    days_overdue: int
    borrower: PartyOut
    lender: PartyOut
    principal_cents: int
    fee_cents: int
    penalty_daily_cents: int
    total_cents: int
    due_date: date
    owed: OwedOut
    penalty_charged_cents: int
    requested_at: datetime
    expires_at: datetime
    disbursed_at: datetime | None
    closed_at: datetime | None
    version: int = Field(
        description="Goes up with every change; send it as `base_version` when approving."
    )

    @classmethod
    def of(cls, view: LoanView) -> LoanOut:
        loan, owed = view.loan, view.owed
        return cls(
            id=loan.id,
            code=loan.code,
            state=loan.state.value,
            overdue=view.overdue,
            days_overdue=view.days_overdue,
            borrower=PartyOut(name=view.borrower_name, phone=view.borrower_phone),
            lender=PartyOut(name=view.lender_name, phone=view.lender_phone),
            principal_cents=loan.terms.principal_cents,
            fee_cents=loan.terms.fee_cents,
            penalty_daily_cents=loan.terms.penalty_daily_cents,
            total_cents=loan.terms.total_cents,
            due_date=loan.terms.due_date,
            owed=OwedOut(
                penalty_cents=owed.penalty_cents,
                fee_cents=owed.fee_cents,
                principal_cents=owed.principal_cents,
                total_cents=owed.total_cents,
            ),
            penalty_charged_cents=loan.penalty_charged_cents,
            requested_at=loan.requested_at,
            expires_at=loan.expires_at,
            disbursed_at=loan.disbursed_at,
            closed_at=loan.closed_at,
            version=loan.version,
        )


class RepaymentOut(BaseModel):
    id: str
    amount_cents: int
    penalty_cents: int
    fee_cents: int
    principal_cents: int
    channel: str
    created_at: datetime


class LoanDetailOut(LoanOut):
    repayments: list[RepaymentOut]

    @classmethod
    def of_detail(cls, detail: LoanDetail) -> LoanDetailOut:
        repayments = [
            RepaymentOut(
                id=r.id,
                amount_cents=r.amount_cents,
                penalty_cents=r.penalty_cents,
                fee_cents=r.fee_cents,
                principal_cents=r.principal_cents,
                channel=r.channel,
                created_at=r.created_at,
            )
            for r in detail.repayments
        ]
        return cls(**LoanOut.of(detail.view).model_dump(), repayments=repayments)


class LoanListOut(BaseModel):
    loans: list[LoanOut]
    next_offset: int | None = Field(
        default=None, description="The offset of the next page; null on the last page."
    )


class RepayOut(BaseModel):
    loan: LoanOut
    applied_cents: int
    penalty_cents: int
    fee_cents: int
    principal_cents: int
    excess_cents: int = Field(description="Asked for beyond what was owed; it stays in the wallet.")


class NotificationOut(BaseModel):
    id: str
    kind: str
    language: str
    body: str
    loan_id: str | None
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, record: NotificationRecord) -> NotificationOut:
        return cls(
            id=record.id,
            kind=record.kind,
            language=record.language,
            body=record.body,
            loan_id=record.loan_id,
            created_at=record.created_at,
            read_at=record.read_at,
        )


class NotificationListOut(BaseModel):
    notifications: list[NotificationOut]
    unread_count: int = Field(description="How many of all your notifications are unread.")
    next_offset: int | None = Field(
        default=None, description="The offset of the next page; null on the last page."
    )


class MarkReadIn(Strict):
    ids: list[Id] = Field(min_length=1, max_length=IDS_PER_MARK_MAX)


class MarkReadOut(BaseModel):
    marked: int


class MarkAllReadOut(BaseModel):
    marked: int
    unread_count: int = Field(description="Still unread: only ones that arrived meanwhile.")


class LiveOut(BaseModel):
    status: Literal["ok"]


class CheckOut(BaseModel):
    """One readiness check. `state`: database ok | unreachable; schema ok | behind | missing |
    unknown | unreadable | not_checked; redis ok | unreachable | not_used; worker ok | stale |
    missing | not_checked | not_used. ok and not_used pass."""

    state: str
    revision: str | None = Field(default=None, description="schema: the database's revision")
    head: str | None = Field(default=None, description="schema: this code's newest revision")
    age_s: float | None = Field(default=None, description="worker: seconds since the last beat")
    stale_after_s: float | None = Field(default=None, description="worker: the bound")


class HealthOut(BaseModel):
    """Readiness: "ok" when every check passes (200), else "degraded" (503)."""

    status: Literal["ok", "degraded"]
    checks: dict[str, CheckOut]


BOOK_FIGURES = (
    "Loans count once their principal reached the borrower; requests, declines and lapses add "
    "nothing. Penalties are accrued to today (`as_of`, Nairobi's date), as they would be paid."
)


class FiguresOut(BaseModel):
    loans_count: int
    lent_cents: int = Field(description="Principal that reached the borrower.")
    outstanding_cents: int = Field(
        description="Still owed on open loans, fee and penalty accrued to today included; "
        "written-off loans are not."
    )
    repaid_cents: int = Field(description="Every repayment: principal, fee and penalty.")
    fees_earned_cents: int = Field(
        description="Fee and penalty actually received (part of `repaid_cents`)."
    )
    fees_due_cents: int = Field(
        description="Fee and penalty owed and not yet paid (part of `outstanding_cents`, not "
        "of `fees_earned_cents`)."
    )
    overdue_count: int
    overdue_cents: int = Field(description="Outstanding on loans past their due date.")
    written_off_count: int
    written_off_cents: int = Field(description="What was still owed when written off.")

    @classmethod
    def of(cls, figures: Figures) -> FiguresOut:
        return cls(**asdict(figures))


class BookBorrowerOut(BaseModel):
    borrower_id: str
    name: str
    phone_masked: str = Field(
        examples=["2547******78"], description="Enough of the number to recognise it."
    )
    figures: FiguresOut


class LenderBookOut(BaseModel):
    as_of: date = Field(description="The day penalties are accrued to (Nairobi).")
    totals: FiguresOut = Field(description=BOOK_FIGURES)
    borrowers_count: int
    borrowers: list[BookBorrowerOut] = Field(
        description="One page, the most outstanding first, then the largest principal."
    )
    next_offset: int | None = Field(description="The `offset` of the next page, if any.")

    @classmethod
    def of(cls, book: LenderBook) -> LenderBookOut:
        return cls(
            as_of=book.as_of,
            totals=FiguresOut.of(book.totals),
            borrowers_count=book.borrowers_count,
            borrowers=[
                BookBorrowerOut(
                    borrower_id=b.borrower_id,
                    name=b.name,
                    phone_masked=b.phone_masked,
                    figures=FiguresOut.of(b.figures),
                )
                for b in book.borrowers
            ],
            next_offset=book.next_offset,
        )


class HistoryLoanOut(BaseModel):
    id: str
    code: str
    state: str
    lender: PartyOut = Field(description="The lender's name and masked number.")
    principal_cents: int
    fee_cents: int
    penalty_charged_cents: int = Field(description="Accrued to today.")
    total_cents: int
    repaid_cents: int
    outstanding_cents: int
    requested_at: datetime
    disbursed_at: datetime | None
    due_date: date
    closed_at: datetime | None
    overdue: bool
    days_overdue: int
    punctuality: Literal["on_time", "late", "open", "not_lent"] = Field(
        description="`on_time`: repaid in full by the due date; `late`: repaid after it, "
        "overdue now, or written off; `open`: not yet due; `not_lent`: no money moved."
    )

    @classmethod
    def of(cls, line: HistoryLine) -> HistoryLoanOut:
        loan = line.loan
        return cls(
            id=loan.id,
            code=loan.code,
            state=loan.state.value,
            lender=PartyOut(name=line.lender_name, phone=line.lender_phone_masked),
            principal_cents=loan.terms.principal_cents,
            fee_cents=loan.terms.fee_cents,
            penalty_charged_cents=loan.penalty_charged_cents,
            total_cents=loan.terms.total_cents,
            repaid_cents=line.repaid_cents,
            outstanding_cents=line.outstanding_cents,
            requested_at=loan.requested_at,
            disbursed_at=loan.disbursed_at,
            due_date=loan.terms.due_date,
            closed_at=loan.closed_at,
            overdue=line.overdue,
            days_overdue=line.days_overdue,
            punctuality=line.punctuality.value,
        )


class HistoryOut(BaseModel):
    as_of: date
    borrowed_cents: int = Field(description=BOOK_FIGURES)
    repaid_cents: int
    outstanding_cents: int
    loans_count: int = Field(description="Loans whose money reached you (all pages).")
    overdue_count: int
    loans: list[HistoryLoanOut] = Field(
        description="Every loan you asked for or took, newest request first; one page."
    )
    next_offset: int | None = Field(description="The `offset` of the next page, if any.")

    @classmethod
    def of(cls, history: BorrowerHistory) -> HistoryOut:
        return cls(
            as_of=history.as_of,
            borrowed_cents=history.borrowed_cents,
            repaid_cents=history.repaid_cents,
            outstanding_cents=history.outstanding_cents,
            loans_count=history.loans_count,
            overdue_count=history.overdue_count,
            loans=[HistoryLoanOut.of(line) for line in history.loans],
            next_offset=history.next_offset,
        )
