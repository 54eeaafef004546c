"""The console's pages and forms. Each route states the permission it needs (`guarded`) and
checks it first; each POST checks its CSRF token before reading anything else."""

from __future__ import annotations

from collections.abc import Iterator

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from deni.domain.errors import NotFound, ValidationFailed
from deni.domain.operators import (
    KIND_PERMISSION,
    Permission,
    ProposalKind,
    ProposalState,
    SignInFailed,
)
from deni.domain.users import nairobi_today
from deni.entrypoints import reports_csv
from deni.entrypoints.gate import client_address
from deni.entrypoints.ops.app import HERE, NUL_REFUSED, clear_login_cookie
from deni.entrypoints.ops.render import page, templates
from deni.entrypoints.ops.security import (
    COOKIE_PATH,
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    check_form,
    check_session_form,
    csrf_token,
    deni_of,
    guarded,
    new_login_nonce,
    operator_for,
    secure_cookies,
)
from deni.services import limits, lookup, outbox, reports, users
from deni.services.mpesa import decisions, reversals
from deni.services.mpesa.ports import SuspenseState
from deni.services.ops import operators, proposals
from deni.services.reports import end_of_day

router = APIRouter()
log = structlog.get_logger(__name__)

FORM_FIELDS_MAX = 12
FIELD_CHARS_MAX = 600
LIST_MAX = 200
AUDIT_ROWS_SHOWN = 100
SESSION_COOKIE_MAX_AGE_S = 8 * 3600


async def form_of(request: Request) -> dict[str, str]:
    """The posted fields as text, bounded in number and length, without NUL characters
    (PostgreSQL refuses them); files are refused."""
    form = await request.form(max_files=0, max_fields=FORM_FIELDS_MAX)
    fields: dict[str, str] = {}
    for name, value in form.items():
        if not isinstance(value, str) or len(value) > FIELD_CHARS_MAX:
            raise ValidationFailed(f"The field {name[:40]!r} is too long.", code="field_too_long")
        if "\x00" in name or "\x00" in value:
            raise ValidationFailed(NUL_REFUSED, code="invalid_characters")
        fields[name] = value
    return fields


def see_other(path: str) -> Response:
    return RedirectResponse(f"{COOKIE_PATH}{path}", status_code=303)


# --- Signing in and out ----------------------------------------------------------------------


@router.get("/static/ops.css", include_in_schema=False)
def stylesheet() -> Response:
    return FileResponse(HERE / "static" / "ops.css", media_type="text/css")


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


def _login_page(request: Request, *, status: int = 200, error: str = "") -> Response:
    nonce = new_login_nonce()
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"csrf": csrf_token(deni_of(request), nonce), "operator": None, "error": error},
        status_code=status,
    )
    _set_cookie(request, response, LOGIN_COOKIE, nonce, max_age_s=900)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await form_of(request)
    check_form(request, fields.get(CSRF_FIELD, ""), against=request.cookies.get(LOGIN_COOKIE, ""))
    deni = deni_of(request)
    limits.limit_ops_sign_in(
        deni.limit_counters, source=client_address(request), now=deni.clock.now()
    )
    try:
        _, token = operators.sign_in(
            deni_of(request),
            username=fields.get("username", ""),
            password=fields.get("password", ""),
            code=fields.get("code", ""),
        )
    except SignInFailed as error:
        return _login_page(request, status=401, error=error.message)
    response = see_other("/")
    _set_cookie(request, response, SESSION_COOKIE, token, max_age_s=SESSION_COOKIE_MAX_AGE_S)
    clear_login_cookie(response)
    return response


@router.post("/logout")
@guarded("POST", "/logout", None)
async def logout(request: Request) -> Response:
    operator_for(request, None)
    check_session_form(request, (await form_of(request)).get(CSRF_FIELD, ""))
    operators.sign_out(deni_of(request), token=request.cookies.get(SESSION_COOKIE, ""))
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age_s: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


# --- Four-eyes proposals ---------------------------------------------------------------------


@router.get("/proposals")
@guarded("GET", "/proposals", Permission.VIEW)
def proposal_list(request: Request) -> Response:
    operator_for(request, Permission.VIEW)
    deni = deni_of(request)
    return page(
        request,
        "proposals.html",
        open=proposals.list_proposals(deni),
        recent=proposals.list_proposals(
            deni,
            states=(
                ProposalState.DONE,
                ProposalState.FAILED,
                ProposalState.REJECTED,
                ProposalState.WITHDRAWN,
            ),
        )[:50],
        kind_permission=KIND_PERMISSION,
    )


@router.post("/proposals")
@guarded("POST", "/proposals", None)  # the kind decides: KIND_PERMISSION, checked by the service
async def propose(request: Request) -> Response:
    operator = operator_for(request, None)
    fields = await form_of(request)
    check_session_form(request, fields.get(CSRF_FIELD, ""))
    try:
        kind = ProposalKind(fields.get("kind", ""))
    except ValueError:
        raise ValidationFailed("Choose what to propose.", code="invalid_kind") from None
    params = {name: fields[name] for name in ("phone", "receipt") if fields.get(name)}
    proposals.propose(
        deni_of(request),
        operator=operator,
        kind=kind,
        target=fields.get("target", ""),
        reason=fields.get("reason", ""),
        params=params,
    )
    return see_other("/proposals")


@router.post("/proposals/{proposal_id}/approve")
@guarded("POST", "/proposals/{proposal_id}/approve", None)  # the kind decides
async def approve(request: Request, proposal_id: str) -> Response:
    operator = operator_for(request, None)
    check_session_form(request, (await form_of(request)).get(CSRF_FIELD, ""))
    proposals.approve(deni_of(request), operator=operator, proposal_id=proposal_id)
    return see_other("/proposals")


@router.post("/proposals/{proposal_id}/reject")
@guarded("POST", "/proposals/{proposal_id}/reject", None)  # the kind decides
async def reject(request: Request, proposal_id: str) -> Response:
    operator = operator_for(request, None)
    fields = await form_of(request)
    check_session_form(request, fields.get(CSRF_FIELD, ""))
    proposals.reject(
        deni_of(request),
        operator=operator,
        proposal_id=proposal_id,
        reason=fields.get("reason", ""),
    )
    return see_other("/proposals")


@router.post("/proposals/{proposal_id}/settle")
@guarded("POST", "/proposals/{proposal_id}/settle", Permission.AUDIT)
async def settle_stuck(request: Request, proposal_id: str) -> Response:
    operator = operator_for(request, Permission.AUDIT)
    fields = await form_of(request)
    check_session_form(request, fields.get(CSRF_FIELD, ""))
    proposals.settle_stuck(
        deni_of(request),
        operator=operator,
        proposal_id=proposal_id,
        reason=fields.get("reason", ""),
    )
    return see_other("/proposals")


# --- Work queues -----------------------------------------------------------------------------


@router.get("/suspense")
@guarded("GET", "/suspense", Permission.VIEW)
def suspense(request: Request) -> Response:
    operator_for(request, Permission.VIEW)
    mpesa = deni_of(request).mpesa
    found = []
    if mpesa is not None:
        with mpesa.uow.read_only() as uow:
            found = uow.suspense.in_states(
                states=[SuspenseState.UNASSIGNED, SuspenseState.ASSIGNING], limit=LIST_MAX
            )
    return page(request, "suspense.html", payments=found, mpesa_on=mpesa is not None)


@router.get("/payouts")
@guarded("GET", "/payouts", Permission.VIEW)
def payouts(request: Request) -> Response:
    operator_for(request, Permission.VIEW)
    mpesa = deni_of(request).mpesa
    waiting = decisions.waiting_payouts(mpesa) if mpesa is not None else []
    claims = decisions.open_claims(mpesa) if mpesa is not None else []
    return page(request, "payouts.html", waiting=waiting, claims=claims, mpesa_on=mpesa is not None)


@router.get("/dead-letters")
@guarded("GET", "/dead-letters", Permission.VIEW)
def dead_letters(request: Request) -> Response:
    operator_for(request, Permission.VIEW)
    return page(
        request, "dead_letters.html", dead=outbox.dead_letters(deni_of(request), limit=LIST_MAX)
    )


@router.post("/dead-letters/{message_id}/retry")
@guarded("POST", "/dead-letters/{message_id}/retry", Permission.RETRY_DEAD_LETTER)
async def retry_dead_letter(request: Request, message_id: str) -> Response:
    operator = operator_for(request, Permission.RETRY_DEAD_LETTER)
    check_session_form(request, (await form_of(request)).get(CSRF_FIELD, ""))
    rearmed = outbox.retry_dead(
        deni_of(request), message_id=message_id, actor_id=operators.actor(operator), channel="ops"
    )
    if not rearmed:
        raise NotFound("No dead message has that id.", code="not_dead")
    return see_other("/dead-letters")


# --- Members ---------------------------------------------------------------------------------


@router.post("/members/{user_id}/lock")
@guarded("POST", "/members/{user_id}/lock", Permission.LOCK_MEMBER)
async def lock_member(request: Request, user_id: str) -> Response:
    """Locking protects a member (a stolen phone, a SIM swap): one operator may, at once."""
    operator = operator_for(request, Permission.LOCK_MEMBER)
    check_session_form(request, (await form_of(request)).get(CSRF_FIELD, ""))
    deni = deni_of(request)
    with deni.uow.read_only() as uow:
        member = uow.users.get(user_id)
    if member is None or member.closed_at is not None:
        raise ValidationFailed("No open account has that id.", code="user_not_found")
    users.set_support_lock(
        deni, phone=member.phone, locked=True, channel="ops", actor_id=operators.actor(operator)
    )
    return see_other(f"/members/{user_id}")


# --- The audit chain -------------------------------------------------------------------------


@router.get("/audit")
@guarded("GET", "/audit", Permission.AUDIT)
def audit_log(request: Request) -> Response:
    operator_for(request, Permission.AUDIT)
    deni = deni_of(request)
    with deni.uow.read_only() as uow:
        head_seq, _ = uow.audit.head()
        rows = uow.audit.scan(after_seq=max(0, head_seq - AUDIT_ROWS_SHOWN), limit=AUDIT_ROWS_SHOWN)
    return page(request, "audit.html", rows=list(reversed(rows)))


# --- The dashboard, looking things up ------------------------------------------------------


@router.get("/")
@guarded("GET", "/", Permission.VIEW)
def dashboard(request: Request) -> Response:
    operator_for(request, Permission.VIEW)
    deni = deni_of(request)
    return page(
        request,
        "dashboard.html",
        board=reports.dashboard(deni, now=deni.clock.now()),
        open_proposals=proposals.list_proposals(deni),
        waiting=decisions.waiting_payouts(deni.mpesa) if deni.mpesa is not None else [],
    )


@router.get("/search")
@guarded("GET", "/search", Permission.VIEW)
def search(request: Request, q: str = "") -> Response:
    operator_for(request, Permission.VIEW)
    found = lookup.search(deni_of(request), query=q) if q.strip() else None
    return page(request, "search.html", q=q[:64], found=found)


@router.get("/members/{user_id}")
@guarded("GET", "/members/{user_id}", Permission.VIEW)
def member(request: Request, user_id: str) -> Response:
    operator = operator_for(request, Permission.VIEW)
    shown = lookup.member_page(deni_of(request), user_id=user_id)
    operators.record_reading(
        deni_of(request), operator, command="ops_read_member", details={"user_id": user_id}
    )
    return page(request, "member.html", p=shown)


@router.get("/loans/{loan}")
@guarded("GET", "/loans/{loan}", Permission.VIEW)
def loan(request: Request, loan: str) -> Response:
    operator = operator_for(request, Permission.VIEW)
    shown = lookup.loan_page(deni_of(request), loan_code_or_id=loan)
    operators.record_reading(
        deni_of(request),
        operator,
        command="ops_read_loan",
        details={"loan_id": shown.terms.loan_id},
    )
    return page(request, "loan.html", p=shown)


# --- Reversals -------------------------------------------------------------------------------


@router.get("/reversals")
@guarded("GET", "/reversals", Permission.MONEY)
def reversal_list(request: Request) -> Response:
    operator_for(request, Permission.MONEY)
    mpesa = deni_of(request).mpesa
    found = reversals.list_reversals(mpesa, limit=LIST_MAX) if mpesa is not None else []
    return page(request, "reversals.html", found=found, mpesa_on=mpesa is not None)


# --- Reports ---------------------------------------------------------------------------------

REPORTS = ("trial-balance", "loan-book", "arrears", "mpesa-recon")


@router.get("/reports")
@guarded("GET", "/reports", Permission.REPORTS)
def report_list(request: Request) -> Response:
    operator_for(request, Permission.REPORTS)
    today = nairobi_today(deni_of(request).clock.now())
    return page(
        request,
        "reports.html",
        reports=REPORTS,
        today=today.isoformat(),
        day_min=reports.REPORT_DAY_MIN.isoformat(),
    )


@router.get("/reports/{name}.csv")
@guarded("GET", "/reports/{name}.csv", Permission.REPORTS)
def report_csv(request: Request, name: str, day: str = "") -> Response:
    """A report as CSV, streamed: the loan book a page at a time."""
    operator = operator_for(request, Permission.REPORTS)
    deni = deni_of(request)
    on_day = reports.report_day(day or None, today=nairobi_today(deni.clock.now()))
    lines: Iterator[str]
    if name == "trial-balance":
        lines = reports_csv.trial_balance_csv(reports.trial_balance(deni, as_of=end_of_day(on_day)))
    elif name == "loan-book":
        lines = reports_csv.loan_book_csv(reports.iter_loan_book(deni, as_of_day=on_day))
    elif name == "arrears":
        lines = reports_csv.arrears_csv(reports.arrears_ageing(deni, as_of_day=on_day))
    elif name == "mpesa-recon":
        lines = reports_csv.mpesa_reconciliation_csv(reports.mpesa_reconciliation(deni, day=on_day))
    else:
        raise NotFound("No such report.", code="report_not_found")
    operators.record_reading(
        deni, operator, command="ops_download_report", details={"report": name, "day": str(on_day)}
    )
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="deni-{name}-{on_day}.csv"'},
    )
