"""Ids are UUIDv7: unique, unguessable, and in the order they were made."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from deni.ids import new_id


def test_ids_are_version_7_and_sort_in_the_order_they_were_made() -> None:
    ids = [new_id() for _ in range(10_000)]  # far more than one millisecond's 4,096 counter
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_made_on_many_threads_never_collide() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(2_000)], range(8)))
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == len(every)
    for batch in batches:
        assert sorted(batch) == batch  # each thread's own ids stay in order
