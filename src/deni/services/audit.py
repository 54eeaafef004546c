"""Walk the audit chain and report any row that was edited, removed or re-ordered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deni.domain.audit import GENESIS_HASH, ChainProblem, verify_chain
from deni.services.ports import Deps

AUDIT_PAGE_ROWS = 1_000
AUDIT_PAGES_MAX = 1_000_000  # a bound far above any real log, so the walk always ends


@dataclass(frozen=True, slots=True)
class AuditReport:
    rows_checked: int
    problems: list[ChainProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_audit_log(
    deps: Deps,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    with deps.uow.read_only() as uow:
        head_seq, head_hash = uow.audit.head()
    problems: list[ChainProblem] = []
    seq, last_hash, checked = 0, GENESIS_HASH, 0
    for _ in range(AUDIT_PAGES_MAX):
        with deps.uow.read_only() as uow:
            page = uow.audit.scan(after_seq=seq, limit=AUDIT_PAGE_ROWS)
        if not page:
            break
        found, seq, last_hash = verify_chain(page, start_seq=seq, start_hash=last_hash)
        problems.extend(found)
        checked += len(page)
        if on_progress is not None:
            on_progress(checked, head_seq)
    if (seq, last_hash) != (head_seq, head_hash):
        problems.append(
            ChainProblem(seq, f"the chain ends at row {seq}, the head says row {head_seq}")
        )
    return AuditReport(checked, problems)
