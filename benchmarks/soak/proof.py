"""After the load and a bounded settle: the proof that no shilling was lost or paid twice.

M-PESA's side is the sandbox's own record of what moved (GET /sandbox/transactions and its
balances); Deni's side is its database, read directly, and its own checks (`deni ledger
check`, `deni audit verify`, `deni reconcile`). Each check has a name, a verdict and the
evidence; a payout whose outcome M-PESA never told (waiting for a person's decision) is counted
apart: correctly parked, it is not a failure, but its money must still be held.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine, text

from deni.domain.ledger import MPESA_RECEIPT_CAUSE, PlatformAccount

SETTLE_POLL_S = 2.0
SHOWN_MAX = 10


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    evidence: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "evidence": self.evidence}


@dataclass(slots=True)
class Proof:
    checks: list[Check] = field(default_factory=list)
    parked_payouts: int = 0
    parked_cents: int = 0
    settle_s: float = 0.0
    settled: bool = False
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.settled and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str, evidence: list[str] | None = None) -> None:
        self.checks.append(Check(name, ok, detail, (evidence or [])[:SHOWN_MAX]))

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "settled": self.settled,
            "settle_s": round(self.settle_s, 1),
            "parked_payouts": self.parked_payouts,
            "parked_cents": self.parked_cents,
            "figures": self.figures,
            "checks": [c.as_json() for c in self.checks],
        }


def unsettled(engine: Engine, *, pulled_since: datetime | None = None) -> dict[str, int]:
    """What is still moving: open M-PESA requests (not those parked for a person), outbox
    messages not done, stored callbacks not applied, claims not decided; and, from
    `pulled_since` (Deni's clock), no Pull API pass finished yet: a paybill payment whose
    confirmation M-PESA dropped is found only by a pull."""
    queries = {
        "open requests": "SELECT count(*) FROM mpesa_requests WHERE state IN"
        " ('queued','sending','sent','unknown') AND NOT awaiting_decision",
        "outbox waiting": "SELECT count(*) FROM outbox WHERE state IN ('pending','sending')",
        "callbacks waiting": "SELECT count(*) FROM callback_inbox WHERE state = 'received'",
        "claims open": "SELECT count(*) FROM payment_claims WHERE state NOT IN"
        " ('credited','rejected','accepted','confirmed','failed')",
    }
    out: dict[str, int] = {}
    with engine.connect() as connection:
        for name, sql in queries.items():
            out[name] = int(connection.execute(text(sql)).scalar_one())
        if pulled_since is not None:
            pulls = connection.execute(
                text(
                    "SELECT count(*) FROM paybill_pulls WHERE state = 'done'"
                    " AND started_at >= :since"
                ),
                {"since": pulled_since},
            ).scalar_one()
            out["no pull since the load ended"] = 0 if pulls else 1
    return out


def settle(
    engine: Engine,
    sandbox_url: str,
    *,
    timeout_s: float,
    pulled_since: datetime | None = None,
    quiet_polls: int = 3,
) -> tuple[bool, float, dict[str, int]]:
    """Faults off, every held callback sent, then wait (bounded) until nothing moves."""
    started = time.monotonic()
    with httpx.Client(base_url=sandbox_url, timeout=30.0) as sandbox:
        sandbox.delete("/sandbox/faults")
        last: dict[str, int] = {}
        calm = 0
        while time.monotonic() - started < timeout_s:
            sandbox.post("/sandbox/callbacks/flush", json={"timeout_s": 10})
            last = unsettled(engine, pulled_since=pulled_since)
            calm = calm + 1 if not any(last.values()) else 0
            if calm >= quiet_polls:
                return True, time.monotonic() - started, last
            time.sleep(SETTLE_POLL_S)
    return False, time.monotonic() - started, last


def prove(engine: Engine, sandbox_url: str, proof: Proof) -> None:
    with httpx.Client(base_url=sandbox_url, timeout=30.0) as sandbox:
        transactions = sandbox.get("/sandbox/transactions").json()["transactions"]
        organisation = sandbox.get("/sandbox/organisation").json()
    with engine.connect() as connection:
        _money_in(connection, transactions, proof)
        _money_out(connection, transactions, proof)
        _accounts_against_mpesa(connection, organisation, proof)
        _wallets_equal_postings(connection, proof)
        _nothing_stuck(connection, proof)
        _loans_agree(connection, proof)
        _figures(connection, transactions, proof)


def _money_in(connection: Any, transactions: list[dict[str, Any]], proof: Proof) -> None:
    """Every payment M-PESA took in (STK, paybill) credited exactly once, for its amount."""
    paid = {t["transaction_id"]: t for t in transactions if t["kind"] in ("stk", "c2b")}
    rows = connection.execute(
        text(
            "SELECT e.cause_id, count(DISTINCT e.id), sum(p.amount_cents) FROM postings p"
            " JOIN journal_entries e ON e.id = p.entry_id"
            " WHERE p.account_id = :paybill AND e.cause_type = :cause GROUP BY e.cause_id"
        ),
        {"paybill": PlatformAccount.MPESA_PAYBILL.value, "cause": MPESA_RECEIPT_CAUSE},
    ).all()
    credited = {receipt: (int(n), int(total)) for receipt, n, total in rows}
    missing = [r for r in paid if r not in credited]
    twice = [r for r, (n, _) in credited.items() if n != 1]
    wrong = [
        f"{r}: M-PESA {paid[r]['amount_cents']}, Deni {abs(total)}"
        for r, (_, total) in credited.items()
        if r in paid and abs(total) != paid[r]["amount_cents"]
    ]
    phantom = [r for r in credited if r not in paid]
    proof.add(
        "every payment in credited exactly once",
        not (missing or twice or wrong or phantom),
        f"{len(paid)} payments at M-PESA, {len(credited)} credited by Deni;"
        f" missing {len(missing)}, credited twice {len(twice)},"
        f" wrong amount {len(wrong)}, unknown to M-PESA {len(phantom)}",
        [
            *(f"missing {r}" for r in missing),
            *(f"twice {r}" for r in twice),
            *wrong,
            *(f"phantom {r}" for r in phantom),
        ],
    )


def _money_out(connection: Any, transactions: list[dict[str, Any]], proof: Proof) -> None:
    """Every B2C M-PESA paid matches one payout Deni recorded as paid, with a posted hold; no
    payout paid twice; none Deni counts as paid that M-PESA never made."""
    paid = {t["transaction_id"]: t for t in transactions if t["kind"] == "b2c"}
    by_originator = {t["originator_conversation_id"]: t for t in paid.values()}
    rows = connection.execute(
        text(
            "SELECT r.id, r.state, r.receipt, r.amount_cents, r.phone, r.awaiting_decision,"
            " h.state FROM mpesa_requests r LEFT JOIN holds h ON h.id = r.hold_id"
            " WHERE r.kind = 'b2c'"
        )
    ).all()
    attempts = connection.execute(
        text(
            "SELECT e.request_id, e.detail FROM mpesa_request_events e"
            " JOIN mpesa_requests r ON r.id = e.request_id WHERE r.kind = 'b2c'"
        )
    ).all()
    sent_ids: dict[str, set[str]] = defaultdict(set)
    for request_id, detail in attempts:
        for originator in by_originator:
            if originator and originator in (detail or ""):
                sent_ids[request_id].add(originator)
    receipts = Counter(r[2] for r in rows if r[1] == "succeeded")
    problems: list[str] = []
    parked = 0
    parked_cents = 0
    matched: set[str] = set()
    for request_id, state, receipt, amount, phone, awaiting, hold_state in rows:
        if state == "succeeded":
            found = paid.get(receipt or "")
            if found is None:
                problems.append(f"{request_id}: paid by Deni, unknown to M-PESA ({receipt})")
            elif found["amount_cents"] != amount or found["phone"] != phone:
                problems.append(f"{request_id}: amount or phone differ from M-PESA's {receipt}")
            if hold_state != "posted":
                problems.append(f"{request_id}: paid, but its hold is {hold_state}")
            matched.add(receipt or "")
        elif awaiting:
            parked += 1
            parked_cents += int(amount)
            if hold_state != "pending":
                problems.append(f"{request_id}: parked for a person, but its hold is {hold_state}")
            matched.update(
                t["transaction_id"]
                for o in sent_ids.get(request_id, ())
                if (t := by_originator.get(o))
            )
        elif state == "failed":
            if hold_state not in ("voided", None):
                problems.append(f"{request_id}: failed, but its hold is {hold_state}")
            for o in sent_ids.get(request_id, ()):
                if o in by_originator:
                    problems.append(f"{request_id}: failed at Deni, paid by M-PESA ({o})")
        else:
            problems.append(f"{request_id}: still {state} after the settle")
    twice = [r for r, n in receipts.items() if n > 1]
    unmatched = [r for r in paid if r not in matched]
    proof.parked_payouts, proof.parked_cents = parked, parked_cents
    proof.add(
        "every B2C paid exactly once and matching a posted hold",
        not (problems or twice or unmatched),
        f"{len(paid)} payouts at M-PESA, {len(rows)} payout requests at Deni"
        f" ({receipts.total()} paid, {parked} parked for a person); problems {len(problems)},"
        f" receipts twice {len(twice)}, M-PESA payouts Deni cannot account for {len(unmatched)}",
        [*problems, *(f"twice {r}" for r in twice), *(f"unmatched {r}" for r in unmatched)],
    )


def _accounts_against_mpesa(connection: Any, organisation: dict[str, Any], proof: Proof) -> None:
    """Deni's two M-PESA accounts against the sandbox's balances (which started at 0
    collections and a known float); parked payouts are the only allowed difference."""
    balances = dict(
        connection.execute(
            text("SELECT id, balance_cents FROM accounts WHERE id IN (:paybill, :float)"),
            {
                "paybill": PlatformAccount.MPESA_PAYBILL.value,
                "float": PlatformAccount.MPESA_B2C_FLOAT.value,
            },
        ).all()
    )
    paybill = int(balances.get(PlatformAccount.MPESA_PAYBILL.value, 0))
    b2c = int(balances.get(PlatformAccount.MPESA_B2C_FLOAT.value, 0))
    working = int(organisation["working_account_cents"])
    utility_spent = FLOAT_START_CENTS - int(organisation["utility_account_cents"])
    proof.figures["mpesa_working_cents"] = working
    proof.figures["mpesa_utility_spent_cents"] = utility_spent
    proof.figures["ledger_paybill_cents"] = paybill
    proof.figures["ledger_b2c_float_cents"] = b2c
    # The ledger's sign for an asset account is its own business: compare magnitudes, and
    # say which way each one points.
    ok_in = abs(paybill) == working
    ok_out = abs(b2c) in (utility_spent, utility_spent - proof.parked_cents)
    proof.add(
        "Deni's M-PESA accounts equal M-PESA's balances",
        ok_in and ok_out,
        f"collections: M-PESA {working}, ledger {paybill}; payouts: M-PESA paid {utility_spent},"
        f" ledger float {b2c} (parked payouts {proof.parked_cents})",
    )


FLOAT_START_CENTS = 1_000_000_00  # the sandbox's utility account at start (sandbox/config.py)


def _wallets_equal_postings(connection: Any, proof: Proof) -> None:
    rows = connection.execute(
        text(
            "SELECT a.id, a.balance_cents, a.postings_count,"
            " (CASE WHEN a.normal_side = 'credit' THEN -1 ELSE 1 END)"
            " * coalesce(sum(p.amount_cents), 0),"
            " count(p.id) FROM accounts a LEFT JOIN postings p ON p.account_id = a.id"
            " GROUP BY a.id, a.balance_cents, a.postings_count, a.normal_side"
        )
    ).all()
    wrong = [
        f"{account}: balance {balance}, postings sum {total} ({count} of {counted})"
        for account, balance, counted, total, count in rows
        if int(balance) != int(total) or int(counted) != int(count)
    ]
    negative = [
        f"{account}: {balance}"
        for account, balance, *_ in rows
        if account.startswith("wallet:") and int(balance) < 0
    ]
    entries_unbalanced = connection.execute(
        text(
            "SELECT count(*) FROM (SELECT entry_id FROM postings GROUP BY entry_id"
            " HAVING sum(amount_cents) <> 0) x"
        )
    ).scalar_one()
    proof.add(
        "every wallet equals its postings",
        not wrong and not negative and entries_unbalanced == 0,
        f"{len(rows)} accounts; differing {len(wrong)}, negative wallets {len(negative)},"
        f" entries not summing to zero {entries_unbalanced}",
        [*wrong, *negative],
    )


def _nothing_stuck(connection: Any, proof: Proof) -> None:
    def count(sql: str) -> int:
        return int(connection.execute(text(sql)).scalar_one())

    stuck = {
        "requests open (not parked)": count(
            "SELECT count(*) FROM mpesa_requests WHERE state IN"
            " ('queued','sending','sent','unknown') AND NOT awaiting_decision"
        ),
        "outbox not done": count(
            "SELECT count(*) FROM outbox WHERE state IN ('pending','sending')"
        ),
        "outbox dead": count("SELECT count(*) FROM outbox WHERE state = 'dead'"),
        "callbacks not applied": count(
            "SELECT count(*) FROM callback_inbox WHERE state IN ('received','failed')"
        ),
        "holds pending (not parked payouts)": count(
            "SELECT count(*) FROM holds h WHERE h.state = 'pending' AND NOT EXISTS"
            " (SELECT 1 FROM mpesa_requests r WHERE r.hold_id = h.id AND r.awaiting_decision)"
        ),
    }
    proof.add(
        "no hold or outbox item stuck",
        not any(stuck.values()),
        ", ".join(f"{k} {v}" for k, v in stuck.items()),
    )


def _loans_agree(connection: Any, proof: Proof) -> None:
    rows = connection.execute(
        text(
            "SELECT l.code, l.state, l.principal_cents, l.fee_cents, l.principal_paid_cents,"
            " l.fee_paid_cents, l.penalty_charged_cents, l.penalty_paid_cents, l.disbursed_at,"
            " coalesce((SELECT sum(r.amount_cents) FROM repayments r WHERE r.loan_id = l.id), 0)"
            " FROM loans l"
        )
    ).all()
    wrong: list[str] = []
    for code, state, principal, fee, p_paid, f_paid, pen, pen_paid, disbursed, repaid in rows:
        paid = int(p_paid) + int(f_paid) + int(pen_paid)
        if int(repaid) != paid:
            wrong.append(f"{code}: repayments {repaid}, loan says {paid} paid")
        if state == "repaid" and (p_paid != principal or f_paid != fee or pen_paid != pen):
            wrong.append(f"{code}: repaid with something still owed")
        if state in ("requested", "declined", "cancelled", "expired") and (disbursed or paid):
            wrong.append(f"{code}: {state} but money moved")
        if state in ("active", "repaid", "written_off") and disbursed is None:
            wrong.append(f"{code}: {state} but never disbursed")
    states = Counter(r[1] for r in rows)
    proof.figures.update({f"loans_{k}": v for k, v in states.items()})
    proof.add(
        "loan states agree with their postings",
        not wrong,
        f"{len(rows)} loans ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))});"
        f" disagreeing {len(wrong)}",
        wrong,
    )


def balance_reports(engine: Engine, proof: Proof) -> None:
    """Every balance report M-PESA answered during the soak (the worker asks every few
    seconds, `deni reconcile` once more at the end): no difference the ledger cannot explain."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT requested_at, working_difference_cents, utility_difference_cents"
                " FROM balance_reports WHERE state = 'received' ORDER BY requested_at"
            )
        ).all()
    drifted = [
        f"{at.isoformat(timespec='seconds')}: working {w}, utility {u}"
        for at, w, u in rows
        if (w or 0) != 0 or (u or 0) != 0
    ]
    proof.figures["balance_reports_received"] = len(rows)
    proof.add(
        "M-PESA's balance reports show no drift",
        len(rows) >= 2 and not drifted,
        f"{len(rows)} balance reports answered; {len(drifted)} with a difference",
        drifted,
    )


def _figures(connection: Any, transactions: list[dict[str, Any]], proof: Proof) -> None:
    kinds = Counter(t["kind"] for t in transactions)
    proof.figures.update({f"mpesa_{k}": v for k, v in kinds.items()})
    for grouped, sql in (
        ("notifications", "SELECT kind, count(*) FROM notifications GROUP BY kind"),
        ("requests", "SELECT kind || ':' || purpose, count(*) FROM mpesa_requests GROUP BY 1"),
        ("entries", "SELECT code, count(*) FROM journal_entries GROUP BY code"),
    ):
        try:
            for name, count in connection.execute(text(sql)).all():
                proof.figures[f"{grouped}:{name}"] = int(count)
        except Exception:
            connection.rollback()
    for name, sql in {
        "suspense_payments": "SELECT count(*) FROM suspense_payments",
        "members": "SELECT count(*) FROM users",
        "journal_entries": "SELECT count(*) FROM journal_entries",
        "reminders_and_notices": "SELECT count(*) FROM notifications",
        "penalties_charged_cents": "SELECT coalesce(sum(penalty_charged_cents), 0) FROM loans",
        "sync_conflicts": "SELECT count(*) FROM sync_conflicts",
        "penalties_paid_cents": "SELECT coalesce(sum(penalty_paid_cents), 0) FROM loans",
        "loans_overdue_at_end": "SELECT count(*) FROM loans WHERE state = 'active'"
        " AND due_date < (SELECT max(created_at) FROM journal_entries)::date",
    }.items():
        try:
            proof.figures[name] = int(connection.execute(text(sql)).scalar_one())
        except Exception:
            connection.rollback()
