"""The mutation score per file, from the results `mutmut run` left in mutants/ (`make mutation`).

A mutant counts as detected when a test failed (killed) or hung (timeout). Survivors and
mutants no selected test reaches count against the score. The mutants listed in EQUIVALENT
cannot change behaviour (docs/testing.md gives the reason for each); they leave the
denominator, and are named here so that a change which makes one of them killable, or renames
it, shows up as a stale entry instead of being silently excluded.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path("mutants")
SCORE_MIN_PERCENT = 97.0
DETECTED = frozenset({"killed", "timeout"})
MISSED = frozenset({"survived", "no tests", "suspicious", "segfault"})

_BYTEORDER = "int.to_bytes/from_bytes default to big-endian since Python 3.11 (required)"
_MINE_NONE = "require_phone_proven tests `if mine:`; None and False alike"
_ROLE = "loan_for compares the role with 'lender' only; any other value means the borrower"
_RELOCK = "transfer locks the same two accounts again in the same transaction: same balances"
_SETTLED_ALWAYS = (
    "settle_after_credit then says True when nothing moved; its callers ignore that or read "
    "the unchanged balance again"
)
EQUIVALENT: dict[str, str] = {
    "deni.domain.loans.xǁLoanǁaccrue_penalty__mutmut_2": (
        "`or` to `and`: with no daily rate, or not overdue, the target penalty is 0 and nothing "
        "is added either way"
    ),
    "deni.domain.reminders.x_reminder_kind__mutmut_17": (
        "`>` to `>=` at max(OVERDUE_REMINDER_DAYS): that day is already in the set above"
    ),
    "deni.domain.secrecy.x_canonical_json__mutmut_4": "ensure_ascii=None is falsy like False",
    "deni.domain.secrecy.x_keyed_digest__mutmut_13": _BYTEORDER,
    "deni.domain.users.x_closed_phone__mutmut_5": _BYTEORDER,
    "deni.domain.users.xǁUserǁ_sign_in_guesses__mutmut_3": (
        "read only when no sign-in lock is in force (asserted); every reader compares it with "
        "now, where a past time and None agree"
    ),
    "deni.domain.users.xǁUserǁ_session_guesses__mutmut_3": (
        "read only when no session lock is in force (asserted); every reader compares it with "
        "now, where a past time and None agree"
    ),
    "deni.services.ledger.x__balances_after__mutmut_21": (
        "account_id only labels an assertion that cannot fail after the refusal above it"
    ),
    "deni.services.loans.x__borrower_and_lender__mutmut_45": _MINE_NONE,
    "deni.services.loans.x_approve_loan__mutmut_40": _MINE_NONE,
    "deni.services.loans.x__repay__mutmut_31": _ROLE,
    "deni.services.loans.x__repay__mutmut_36": _ROLE,
    "deni.services.loans.x__repay__mutmut_37": _ROLE,
    "deni.services.loans.x__repay__mutmut_9": "lock=None is falsy like lock=False: a plain read",
    "deni.services.loans.x__fund_if_possible__mutmut_19": _RELOCK,
    "deni.services.loans.x__fund_if_possible__mutmut_30": _RELOCK,
    "deni.services.loans.x_settle_after_credit__mutmut_27": _SETTLED_ALWAYS,
    "deni.services.loans.x_settle_after_credit__mutmut_29": _SETTLED_ALWAYS,
    "deni.services.loans.x__apply_to_overdue_loans__mutmut_2": _SETTLED_ALWAYS,
    "deni.services.loans.x__apply_to_overdue_loans__mutmut_12": _SETTLED_ALWAYS,
    "deni.services.loans.x__apply_to_overdue_loans__mutmut_48": (
        "the sum is only compared with 0, and every amount added is above 0"
    ),
}


def main() -> int:
    metas = sorted((MUTANTS / "src").rglob("*.py.meta"))
    if not metas:
        print("No results in mutants/: run `make mutation` first.")
        return 1
    width = max(len(str(meta.relative_to(MUTANTS))) for meta in metas) - len(".meta")
    print(f"{'file':<{width}}  mutants  detected  missed  equivalent  score")
    totals: Counter[str] = Counter()
    missed_names: list[str] = []
    seen_equivalent: set[str] = set()
    unchecked = 0
    scores_ok = True
    for meta in metas:
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if not exit_codes:
            continue
        counts: Counter[str] = Counter()
        for name, exit_code in exit_codes.items():
            status = status_by_exit_code[exit_code]
            if name in EQUIVALENT and status in MISSED:
                seen_equivalent.add(name)
                counts["equivalent"] += 1
            elif status in DETECTED:
                counts["detected"] += 1
            elif status in MISSED:
                counts["missed"] += 1
                missed_names.append(f"{name}: {status}")
            else:
                unchecked += 1
        counts["mutants"] = len(exit_codes)
        totals.update(counts)
        score = _percent(counts)
        scores_ok = scores_ok and score >= SCORE_MIN_PERCENT
        file = str(meta.relative_to(MUTANTS))[: -len(".meta")]
        print(_row(file, width, counts, score))
    print(_row("all", width, totals, _percent(totals)))
    for line in missed_names:
        print(f"  missed {line}")
    stale = sorted(set(EQUIVALENT) - seen_equivalent)
    for name in stale:
        print(f"  stale equivalent entry (killed, or no such mutant): {name}")
    if unchecked:
        print(f"{unchecked} mutants were not checked: the run did not finish.")
    if not scores_ok:
        print(f"A file scores below {SCORE_MIN_PERCENT:g}%.")
    return 0 if scores_ok and not stale and not unchecked else 1


def _percent(counts: Counter[str]) -> float:
    judged = counts["detected"] + counts["missed"]
    return 100.0 if judged == 0 else 100.0 * counts["detected"] / judged


def _row(file: str, width: int, counts: Counter[str], score: float) -> str:
    return (
        f"{file:<{width}}  {counts['mutants']:>7}  {counts['detected']:>8}  "
        f"{counts['missed']:>6}  {counts['equivalent']:>10}  {score:5.1f}%"
    )


if __name__ == "__main__":
    sys.exit(main())
