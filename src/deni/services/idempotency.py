"""How long Idempotency-Key answers are kept, and their pruning (housekeeping runs it).

The keys themselves are claimed and answered by the API (entrypoints/api/idempotency.py).
"""

from __future__ import annotations

from datetime import timedelta

from deni.services.ports import Deps

# How long a key and its answer are kept (Deni's own choice: a client that lost an answer
# retries within minutes, or within hours after a night without network; a day covers both).
# After that the key is free again and a retry runs anew: the ledger's own keys and the
# services' state checks keep it from moving money twice (ADR 0002, level 1).
ANSWER_RETENTION = timedelta(hours=24)
PRUNE_BATCH = 500
PRUNE_BATCHES_PER_RUN_MAX = 20


def prune_expired(deps: Deps) -> int:
    """Drop keys and answers older than ANSWER_RETENTION, in short transactions of at most
    PRUNE_BATCH rows, at most PRUNE_BATCHES_PER_RUN_MAX of them; the next run goes on."""
    created_before = deps.clock.now() - ANSWER_RETENTION
    pruned = 0
    for _ in range(PRUNE_BATCHES_PER_RUN_MAX):
        with deps.uow() as uow:
            count = uow.idempotency.prune(created_before=created_before, limit=PRUNE_BATCH)
            uow.commit()
        pruned += count
        if count < PRUNE_BATCH:
            break
    return pruned
