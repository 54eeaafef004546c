"""Reminders: the periodic sweep (expire what nobody answered, fund approvals whose lender now
has the money, remind borrowers of due dates), and a lender's own nudge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from deni.domain.errors import Conflict
from deni.domain.loans import LoanState
from deni.domain.reminders import DUE_SOON_DAYS, reminder_key, reminder_kind
from deni.domain.users import nairobi_today
from deni.services import loans
from deni.services.common import audit, notify
from deni.services.ports import Deps, UnitOfWorkFactory

REMINDER_PAGE_LOANS = 200
REMINDER_PAGES_MAX = 1_000  # 200,000 loans due or overdue per run is far beyond need


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int
    reminders: int
    funded: int = 0


def sweep(deps: Deps) -> SweepReport:
    expired = loans.expire_stale_loans(
        deps,
    )
    funded = loans.fund_approved_loans(
        deps,
    )
    reminded = send_due_reminders(
        deps,
    )
    return SweepReport(expired, reminded, funded)


def send_due_reminders(deps: Deps) -> int:
    """Store due-soon, due-today and overdue notifications; each at most once a day."""
    now = deps.clock.now()
    today = nairobi_today(now)
    due_before = today + timedelta(days=DUE_SOON_DAYS + 1)
    sent, after_id = 0, ""
    for _ in range(REMINDER_PAGES_MAX):
        with deps.uow.read_only() as uow:
            page = uow.loans.active_due_before(
                due_before, after_id=after_id, limit=REMINDER_PAGE_LOANS
            )
        if not page:
            break
        sent += sum(_remind(deps.uow, loan_id, now=now) for loan_id in page)
        after_id = page[-1]
    return sent


def _remind(uow_factory: UnitOfWorkFactory, loan_id: str, *, now: datetime) -> bool:
    today = nairobi_today(now)
    with uow_factory() as uow:
        loan = uow.loans.get(loan_id)
        assert loan is not None
        kind = reminder_kind(loan, today)
        if kind is None:
            return False
        key = reminder_key(kind, loan.id, today)
        if uow.notifications.exists(key):
            return False
        borrower = uow.users.get(loan.borrower_id)
        assert borrower is not None
        loan.accrue_penalty(today)  # for the amount shown only; the loan is not saved here
        params: dict[str, object] = {
            "amount_cents": loan.owed().total_cents,
            "loan_code": loan.code,
        }
        if kind == "due_soon":
            params["due_date"] = loan.terms.due_date
        if kind == "overdue":
            params["days_overdue"] = loan.days_overdue(today)
        notify(
            uow, user=borrower, kind=kind, params=params, now=now, loan_id=loan.id, dedupe_key=key
        )
        uow.commit()
    return True


def remind_borrower(
    deps: Deps,
    *,
    lender_id: str,
    loan_id: str,
    channel: str,
) -> bool:
    """The lender nudges the borrower (by SMS). At most once a day per loan: False if already."""
    now = deps.clock.now()
    today = nairobi_today(now)
    with deps.uow() as uow:
        loan = loans.loan_for(uow, loan_id, user_id=lender_id, role="lender", lock=False)
        if loan.state is not LoanState.ACTIVE:
            raise Conflict("Only an active loan can be reminded.", code="loan_not_active")
        key = f"lender_reminder:{loan.id}:{today.isoformat()}"
        if uow.notifications.exists(key):
            return False
        lender, borrower = uow.users.get(loan.lender_id), uow.users.get(loan.borrower_id)
        assert lender is not None
        assert borrower is not None
        loan.accrue_penalty(today)  # for the amount shown; the loan is not saved
        params = {
            "lender_name": lender.name,
            "amount_cents": loan.owed().total_cents,
            "due_date": loan.terms.due_date,
            "loan_code": loan.code,
        }
        notify(
            uow,
            user=borrower,
            kind="lender_reminder",
            params=params,
            now=now,
            loan_id=loan.id,
            dedupe_key=key,
        )
        details = {"loan_id": loan.id}
        audit(uow, actor_id=lender_id, channel=channel, command="remind", details=details, now=now)
        uow.commit()
    return True
